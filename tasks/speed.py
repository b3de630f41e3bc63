"""How fast the server transcribes, per model: the forecast of a job's finish.

A transcription's server time is a queue wait plus a processing time that grows with the
audio's length: ``queue + rate * duration``, times a lognormal spread of ``sigma`` (the
emulator's ``--realistic`` timing has the same shape, docs/polling.md). ``forecast``
turns that into the quantiles ``tasks.polling`` schedules from. ``fit`` learns ``queue``,
``rate`` and ``sigma`` for one model from its finished jobs, each known only within an
interval (the server finished between the last poll that saw the job pending and the one
that saw it done); until a model has ``MIN_JOBS`` of them it has no ``SpeedModel`` and its
jobs keep today's schedule. ``tasks.learn`` feeds ``fit`` from the store, per model and
periodically (beat's ``stt.fit_speed``; docs/polling.md).
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
# Rounds of ``fit``'s rate-then-queue refinement.
_REFINE = 3
# A server time at or under the queue wait counts as this (seconds), not as log(0).
_TINY = 1e-3
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
    intervals short next to the times that matter). The two parameters are read where each
    shows: the *rate* from the jobs known precisely (long audio, whose interval is narrow
    next to its time): the median of ``log((time - queue) / duration)`` is log ``rate``,
    its spread (median absolute deviation, robust to stragglers) ``sigma``; the *queue
    wait* from the shortest audio, where it is most of the time. Each needs the other, so
    the two are refined in turn from ``queue = 0`` (``_REFINE`` rounds: the rate moves
    little once the queue is a few seconds against minutes). Rough, cheap and safe with
    messy data: the schedule needs the quantiles roughly right.

    An earlier fit searched a grid of queue waits for the one that made ``sigma`` smallest:
    with the noise of a few hundred jobs that minimum wandered, and the rate with it
    (0.081-0.111 for a true 0.1 over twelve 400-job draws, against 0.098-0.111 now).
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
    # fit the rate on the jobs known to within PRECISION of their time, when there are
    # enough of them.
    precise = [o for o in usable if o.upper - o.lower <= PRECISION * _middle(o)]
    for_rate = precise if len(precise) >= MIN_JOBS else usable
    by_duration = sorted(usable, key=lambda o: o.duration)
    for_queue = by_duration[: max(MIN_JOBS // 3, len(by_duration) // 5)]
    queue, rest = 0.0, [0.0]
    for _ in range(_REFINE):
        rate = math.exp(statistics.median(_log_rates(for_rate, queue)))
        rest = sorted(max(0.0, _middle(o) - rate * o.duration) for o in for_queue)
        queue = statistics.median(rest)
    logs = _log_rates(for_rate, queue)
    center = statistics.median(logs)
    sigma = _MAD_TO_SIGMA * statistics.median(abs(v - center) for v in logs)
    sigma *= 1 + SIGMA_MARGIN / math.sqrt(len(for_rate))
    spread = max(0.0, rest[int(0.9 * (len(rest) - 1))] - queue)
    return SpeedModel(queue=queue, rate=math.exp(center), sigma=sigma, queue_spread=spread)


def _middle(o: Observation) -> float:
    return (o.lower + o.upper) / 2


def _log_rates(observations: Sequence[Observation], queue: float) -> list[float]:
    """log((time - queue) / duration) of each job: log ``rate`` plus its spread."""
    return [math.log(max(_middle(o) - queue, _TINY) / o.duration) for o in observations]
