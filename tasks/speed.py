"""How fast the server transcribes, per model: the forecast of a job's finish.

A transcription's server time is a queue wait plus a processing time that grows with the
audio's length: ``queue + rate * duration``, times a lognormal spread of ``sigma`` (the
emulator's ``--realistic`` timing has the same shape, docs/polling.md). ``forecast``
turns that into the quantiles ``tasks.polling`` schedules from. Learning ``queue``,
``rate`` and ``sigma`` per model from finished jobs (interval-censored: the server finished
between the last poll that saw it pending and the one that saw it done) is the next step of
issue 15; until a model has such a fit, it has no ``SpeedModel`` and its jobs keep today's
schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tasks.polling import Forecast

__all__ = ["Z_HIGH", "Z_LOW", "SpeedModel"]

# The forecast's low is the 10th percentile of the processing time, its high the 97.5th:
# polling densely up to p97.5 keeps the p95 lag low (bench/poll_duration.py); past it, the
# few stragglers get today's schedule.
Z_LOW = 1.2816
Z_HIGH = 1.96


@dataclass(frozen=True, slots=True)
class SpeedModel:
    """Server time of a job = ``queue + rate * duration``, lognormal spread ``sigma``."""

    queue: float  # seconds queued before processing starts (typical)
    rate: float  # server seconds per second of audio (0.05 = 20x real time)
    sigma: float  # spread of the processing time (lognormal sigma)
    queue_spread: float = 0.0  # how much later than ``queue`` a job may start

    def __post_init__(self) -> None:
        values = (self.queue, self.rate, self.sigma, self.queue_spread)
        if not all(math.isfinite(v) and v >= 0 for v in values):
            raise ValueError(
                f"need finite, non-negative queue, rate, sigma and queue_spread, got {values}"
            )

    def forecast(self, duration: float | None) -> Forecast | None:
        """Quantiles of the finish for ``duration`` seconds of audio; None if unknown."""
        if duration is None or not math.isfinite(duration) or duration <= 0:
            return None
        processing = self.rate * duration
        return Forecast(
            low=self.queue + processing * math.exp(-Z_LOW * self.sigma),
            mid=self.queue + processing,
            high=self.queue + self.queue_spread + processing * math.exp(Z_HIGH * self.sigma),
        )
