"""How long the emulated server takes over a job: queue wait, then processing.

By default both are fixed (``queue_delay``, then ``speed x duration`` or ``fixed``): tests
get exact, repeatable times. ``--realistic`` (or the admin API's ``spread``,
``queue_spread``, ``straggler_rate``, ``straggler_factor``) adds what a real service shows,
so duration-aware polling can be tested honestly (docs/polling.md):

- queue wait uniform in ``[queue_delay, queue_delay + queue_spread]``;
- processing ``speed x duration`` times a lognormal factor of sigma ``spread`` (median 1);
- a share ``straggler_rate`` of jobs takes ``straggler_factor`` times as long.

The presets: speed 0.1 (10x real time; vendors publish batch turnarounds of roughly 5-30x
real time), spread 0.3, queue spread 3 s, 2 % stragglers at 3x. The draws come from the
emulator's one seeded random source, and none is made while the extras are off, so the
fault dice of existing seeds are unchanged.
"""

from __future__ import annotations

import random
from typing import Protocol

__all__ = ["REALISTIC", "TimingConfig", "server_times"]

REALISTIC = {"spread": 0.3, "queue_spread": 3.0, "straggler_rate": 0.02, "straggler_factor": 3.0}


class TimingConfig(Protocol):
    @property
    def queue_delay(self) -> float: ...
    @property
    def queue_spread(self) -> float: ...
    @property
    def spread(self) -> float: ...
    @property
    def straggler_rate(self) -> float: ...
    @property
    def straggler_factor(self) -> float: ...
    def processing_seconds(self, duration: float) -> float: ...


def server_times(config: TimingConfig, duration: float, rng: random.Random) -> tuple[float, float]:
    """``(queue wait, processing)`` in seconds for a job of ``duration`` seconds of audio."""
    queue = config.queue_delay
    if config.queue_spread > 0:
        queue += rng.uniform(0.0, config.queue_spread)
    processing = config.processing_seconds(duration)
    if config.spread > 0:
        processing *= rng.lognormvariate(0.0, config.spread)
    if config.straggler_rate > 0 and rng.random() < config.straggler_rate:
        processing *= config.straggler_factor
    return queue, processing
