"""How fast the server transcribes, per model: the forecast of a job's finish.

A transcription's server time is a queue wait plus a processing time that grows with the
audio's length: ``queue + rate * duration``, times a lognormal spread of ``sigma`` (the
emulator's ``--realistic`` timing has the same shape, docs/polling.md). ``forecast``
turns that into the quantiles ``tasks.polling`` schedules from. ``fit`` learns ``queue``,
``rate`` and ``sigma`` for one model from its finished jobs, each known only within an
interval (the server finished between the last poll that saw the job pending and the one
that saw it done); until a model has ``MIN_JOBS`` of them it has no ``SpeedModel`` and its
jobs keep today's schedule. Feeding ``fit`` from the store, per model and periodically, is
the part of issue 15 still to come (docs/polling.md).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from tasks.polling import Forecast

__all__ = ["MIN_JOBS", "Z_HIGH", "Z_LOW", "Observation", "SpeedModel", "fit"]

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


# Fewer finished jobs than this and a model keeps today's schedule.
MIN_JOBS = 30
# Candidate queue waits tried by ``fit``, as fractions of the shortest jobs' server time.
_QUEUE_GRID = 40
# An observation is precise when its interval is at most this share of its time.
PRECISION = 0.2
# MAD -> standard deviation for a normal distribution.
_MAD_TO_SIGMA = 1.4826
# A spread fitted on few jobs is too narrow as often as too wide, and too narrow costs
# lag (polls end before the job does): widen it by SIGMA_MARGIN / sqrt(jobs), which
# fades as jobs accrue (x1.37 at MIN_JOBS, x1.06 at 1,000). Chosen with
# bench/poll_duration.py's convergence table.
SIGMA_MARGIN = 2.0


@dataclass(frozen=True, slots=True)
class Observation:
    """One finished job: seconds of audio, and bounds on its server time after the submit
    (``lower``: the last poll that saw it pending, 0 if none; ``upper``: the poll that saw
    it finished)."""

    duration: float
    lower: float
    upper: float


def fit(observations: Sequence[Observation]) -> SpeedModel | None:
    """``queue + rate * duration`` with a lognormal spread, fitted robustly; None if too few.

    Each server time is taken at the middle of its interval (the poll schedule makes the
    intervals short next to the times that matter). For each candidate queue wait, the
    log of ``(time - queue) / duration`` should be one normal variable: its median is
    log ``rate`` and its spread (median absolute deviation, robust to stragglers) ``sigma``;
    the queue wait that makes that spread smallest wins, on the jobs whose interval is
    narrow next to their time. The queue wait used is then read off the shortest audio.
    Rough, cheap and safe with messy data: the schedule needs the quantiles roughly right.
    """
    usable = [
        o
        for o in observations
        if all(math.isfinite(v) for v in (o.duration, o.lower, o.upper))
        and o.duration > 0
        and 0 <= o.lower <= o.upper
        and o.upper > 0
    ]
    if len(usable) < MIN_JOBS:
        return None
    # Short jobs' intervals are wide next to their times (a 10 s poll gap on a 5 s job):
    # fit on the jobs known to within PRECISION of their time, when there are enough.
    precise = [o for o in usable if o.upper - o.lower <= PRECISION * (o.lower + o.upper) / 2]
    observations_usable = usable
    if len(precise) >= MIN_JOBS:
        usable = precise
    times = [(o.lower + o.upper) / 2 for o in usable]
    shortest = min(times)
    best: tuple[float, float, float] | None = None  # (sigma, queue, rate)
    for step in range(_QUEUE_GRID):
        queue = shortest * step / _QUEUE_GRID
        logs = [math.log((t - queue) / o.duration) for t, o in zip(times, usable, strict=True)]
        center = statistics.median(logs)
        sigma = _MAD_TO_SIGMA * statistics.median(abs(v - center) for v in logs)
        if best is None or sigma < best[0]:
            best = (sigma, queue, math.exp(center))
    assert best is not None
    sigma, _, rate = best
    sigma *= 1 + SIGMA_MARGIN / math.sqrt(len(usable))
    # The long jobs that fix the rate say little about the queue wait: take it from the
    # shortest audio, where it is most of the time (median and p90 of what is left).
    by_duration = sorted(observations_usable, key=lambda o: o.duration)
    shortest_audio = by_duration[: max(MIN_JOBS // 3, len(by_duration) // 5)]
    rest = sorted(max(0.0, (o.lower + o.upper) / 2 - rate * o.duration) for o in shortest_audio)
    queue = statistics.median(rest)
    spread = max(0.0, rest[int(0.9 * (len(rest) - 1))] - queue)
    return SpeedModel(queue=queue, rate=rate, sigma=sigma, queue_spread=spread)
