"""When to ask again: the poll schedule and the submit-retry backoff, as pure functions.

Every number of the schedule is named here and nowhere else; ``tasks.settings`` carries the
same defaults so they can be overridden from the environment (a unit test keeps the two
in step). The tasks only call these functions and pass the result to Celery as a countdown.

Why these defaults (measured by ``bench/poll_policy.py``, docs/benchmarks.md): on a workload
of jobs taking seconds to ten minutes on the server (lognormal, median ~45 s), no schedule
that only knows the time since submit can beat a fixed interval by more than ~8 % on
"lag x polls"; the choice is a point on that frontier. The first poll 8 s after the submit
(no server finishes a job the instant it was queued), then x1.5 to a 10 s cap, is the
grid's schedule that beats the vendor example's fixed 10 s polling on all three figures at
once (mean lag 0.93x, p95 lag 0.96x, polls per job 0.98x); the former 2 s x1.5 cap 15 s,
polled at once, noticed 30-40 % later for 10 % more polls. Jitter (±25 %) keeps jobs
submitted together from polling in lockstep.
The 30-minute deadline sits well inside the one hour the server keeps a result.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from tasks.settings import Settings

__all__ = [
    "CALLBACK_BASE_DELAY",
    "CALLBACK_FACTOR",
    "CALLBACK_MAX_DELAY",
    "DEFAULT_POLICY",
    "FORECAST_MIN_STEP",
    "FORECAST_STEP_SCALE",
    "RETRY_AFTER_CAP",
    "SUBMIT_BASE_DELAY",
    "SUBMIT_FACTOR",
    "SUBMIT_MAX_DELAY",
    "SUBMIT_MAX_RETRIES",
    "Forecast",
    "PollPolicy",
    "callback_retry_delay",
    "deadline_passed",
    "expected_polls",
    "first_poll_delay",
    "forecast_step",
    "min_step",
    "next_poll_delay",
    "planned_poll_delay",
    "submit_retry_delay",
]

# A server's Retry-After is honoured up to this many seconds. A larger value (or a date far
# ahead) is more likely a misconfigured proxy than a real wish, and a countdown beyond the
# broker's visibility timeout (tasks.celeryconfig) would get the message redelivered.
RETRY_AFTER_CAP = 300.0

# Submit (and other transient) retries: 1, 2, 4 ... 60 s ceilings with full jitter, 8 tries.
SUBMIT_BASE_DELAY = 1.0
SUBMIT_FACTOR = 2.0
SUBMIT_MAX_DELAY = 60.0
SUBMIT_MAX_RETRIES = 8

# Completion-callback redeliveries: ceilings 2, 4, 8 ... 300 s, "equal jitter" (half fixed,
# half random). A receiver is usually down for a deploy or a restart, so the schedule keeps
# trying for minutes (10 attempts span about 7-13 min) rather than giving up in seconds; the
# cap equals RETRY_AFTER_CAP, below the broker's visibility timeout like every countdown.
CALLBACK_BASE_DELAY = 2.0
CALLBACK_FACTOR = 2.0
CALLBACK_MAX_DELAY = 300.0


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """The poll schedule: ``first_delay * factor ** attempt``, jittered, capped, bounded."""

    first_delay: float = 8.0
    factor: float = 1.5
    max_delay: float = 10.0
    jitter: float = 0.25
    deadline: float = 1800.0  # seconds from submission until the job counts as timed out

    def __post_init__(self) -> None:
        if not 0 < self.first_delay <= self.max_delay:
            raise ValueError("need 0 < first_delay <= max_delay")
        if self.factor < 1:
            raise ValueError("factor must be >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if self.deadline <= 0:
            raise ValueError("deadline must be positive")

    @classmethod
    def from_settings(cls, settings: Settings) -> PollPolicy:
        return cls(
            first_delay=settings.poll_first_delay,
            factor=settings.poll_factor,
            max_delay=settings.poll_max_delay,
            jitter=settings.poll_jitter,
            deadline=settings.poll_deadline,
        )

    def base_delay(self, attempt: int) -> float:
        """The un-jittered delay after poll number ``attempt`` (0-based), capped."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        try:
            delay = self.first_delay * self.factor**attempt
        except OverflowError:  # factor ** 10_000: long past the cap anyway
            return self.max_delay
        return min(delay, self.max_delay)


DEFAULT_POLICY = PollPolicy()


def _honour(delay: float, retry_after: float | None) -> float:
    """Never earlier than the server asked, but no later than ``RETRY_AFTER_CAP``."""
    if retry_after is None or math.isnan(retry_after):
        return delay
    return max(delay, min(max(retry_after, 0.0), RETRY_AFTER_CAP))


def next_poll_delay(
    attempt: int,
    *,
    policy: PollPolicy = DEFAULT_POLICY,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before the poll after poll number ``attempt`` (0-based).

    Jitter multiplies the base delay by a factor in ``[1 - jitter, 1 + jitter]``; the cap
    applies *after* jitter, so ``policy.max_delay`` is a hard bound on the schedule (near
    the cap the jitter only shortens). A server's ``Retry-After`` overrides the schedule
    upwards only, and is itself bounded by ``RETRY_AFTER_CAP``.
    """
    base = policy.base_delay(attempt)
    jittered = base * (1.0 + policy.jitter * (2.0 * rand() - 1.0))
    return _honour(min(jittered, policy.max_delay), retry_after)


def submit_retry_delay(
    attempt: int,
    retry_after: float | None = None,
    *,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds before retry number ``attempt + 1`` of a submit that failed transiently.

    "Full jitter": uniform in ``[0, min(SUBMIT_MAX_DELAY, SUBMIT_BASE_DELAY * 2 ** attempt)]``,
    which spreads a burst of rate-limited submits best. ``Retry-After`` as for polls.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    try:
        ceiling = min(SUBMIT_MAX_DELAY, SUBMIT_BASE_DELAY * SUBMIT_FACTOR**attempt)
    except OverflowError:
        ceiling = SUBMIT_MAX_DELAY
    return _honour(ceiling * rand(), retry_after)


def callback_retry_delay(
    attempt: int,
    retry_after: float | None = None,
    *,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds before delivery attempt ``attempt + 1`` after attempt ``attempt`` (1-based)
    failed.

    Uniform in ``[ceiling / 2, ceiling]`` with ``ceiling = min(CALLBACK_MAX_DELAY,
    CALLBACK_BASE_DELAY * CALLBACK_FACTOR ** (attempt - 1))``: unlike submits there is no
    burst to spread, but a floor keeps a receiver that is restarting from being hit again at
    once. The receiver's ``Retry-After`` (on 429/503) is honoured as for polls.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    try:
        ceiling = min(CALLBACK_MAX_DELAY, CALLBACK_BASE_DELAY * CALLBACK_FACTOR ** (attempt - 1))
    except OverflowError:
        ceiling = CALLBACK_MAX_DELAY
    return _honour(ceiling * (0.5 + 0.5 * rand()), retry_after)


def deadline_passed(started_at: float, now: float, policy: PollPolicy = DEFAULT_POLICY) -> bool:
    """Whether a job submitted at ``started_at`` (epoch seconds) has run out of time."""
    return now - started_at >= policy.deadline


def expected_polls(duration_s: float, policy: PollPolicy = DEFAULT_POLICY) -> int:
    """How many GETs the schedule makes for a job the server finishes ``duration_s`` after
    submission, ignoring jitter and queueing.

    The first poll comes ``first_delay`` after the submit (``pipeline_signature`` sends it
    with that countdown); poll ``k + 1`` comes ``base_delay(k)`` after poll ``k``. The first
    poll at or after ``duration_s`` sees the job completed and is the last. A poll due at or
    after the deadline is not made (the job is stored as timed out instead), so a job longer
    than the deadline costs only the polls before it.
    """
    polls, t = 0, policy.first_delay
    while t < policy.deadline:
        polls += 1
        if t >= duration_s:
            break
        t += policy.base_delay(polls - 1)
    return polls


# -- polling informed by a forecast of the finish (issue 15, docs/polling.md) -------------

# No two planned polls closer than this: a GET and its answer take a good part of a second,
# and a job whose forecast window is narrow gains nothing from polling it every second.
# For the default cap (10 s); a policy with another cap scales it in proportion
# (``min_step``), so a time-compressed schedule (tests, bench/poll_duration.py --real)
# keeps its shape.
FORECAST_MIN_STEP = 2.0
# The window's step is this times "the polls saved before low, spread over the window": a
# little sparser than even, because the window (low to a high quantile) is wider than where
# most jobs finish. Chosen with bench/poll_duration.py on *learned* models (twelve draws
# each of 400 and 1,000 jobs): 1.1 gives p95 lag 0.44-0.45x of fixed 10 s (worst draw
# 0.48-0.51x) at 0.91-0.92x its polls; 1.2: p95 0.47-0.49x (worst 0.51-0.52x) at 0.85x;
# 1.0: polls 1.00x, over the budget.
FORECAST_STEP_SCALE = 1.1


@dataclass(frozen=True, slots=True)
class Forecast:
    """When the server is likely to finish a job, in seconds after the submit.

    ``low``, ``mid`` and ``high`` are quantiles of the predicted finish (e.g. p10, p50,
    p90), from the audio's duration and the model's measured speed. No forecast (unknown
    duration or model) means today's schedule, exactly.
    """

    low: float
    mid: float
    high: float

    def __post_init__(self) -> None:
        values = (self.low, self.mid, self.high)
        if not all(math.isfinite(v) for v in values) or not 0 <= self.low <= self.mid <= self.high:
            raise ValueError(f"need finite 0 <= low <= mid <= high, got {values}")


def min_step(policy: PollPolicy = DEFAULT_POLICY) -> float:
    """``FORECAST_MIN_STEP`` for ``policy``: in proportion to its cap (2 s for 10 s)."""
    return FORECAST_MIN_STEP * policy.max_delay / DEFAULT_POLICY.max_delay


def forecast_step(forecast: Forecast, policy: PollPolicy = DEFAULT_POLICY) -> float:
    """Seconds between polls while the job is likely finishing (``low`` to ``high``).

    The polls a fixed ``max_delay`` interval would have spent before ``low``, where the job
    is most likely still running, are spent in the window instead: the step is about
    ``max_delay * (mid - low) / mid`` (times ``FORECAST_STEP_SCALE``), so a job finishing
    near ``mid`` costs about as many polls as with today's schedule and is seen several
    times sooner. Bounded by ``FORECAST_MIN_STEP`` and ``max_delay``: never sparser than
    today's cap.
    """
    if forecast.mid <= 0:
        return min_step(policy)
    step = FORECAST_STEP_SCALE * policy.max_delay * (forecast.mid - forecast.low) / forecast.mid
    return min(max(step, min_step(policy)), policy.max_delay)


def first_poll_delay(
    policy: PollPolicy = DEFAULT_POLICY, forecast: Forecast | None = None
) -> float:
    """Countdown of the first poll after the submit: near the forecast's ``low``.

    Without a forecast, ``policy.first_delay`` as today. Never before ``min_step``,
    never past the deadline (a poll at the deadline still ends the job in time).
    """
    if forecast is None:
        return policy.first_delay
    return min(max(forecast.low, min_step(policy)), policy.deadline)


def planned_poll_delay(
    elapsed: float,
    attempt: int,
    *,
    policy: PollPolicy = DEFAULT_POLICY,
    forecast: Forecast | None = None,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds until the next poll, for a poll made ``elapsed`` s after the submit.

    - no forecast: ``next_poll_delay(attempt)``, today's schedule exactly;
    - before ``low``: wait until ``low`` (the job is most likely still running);
    - from ``low`` to ``high``: every ``forecast_step`` seconds, jittered like the schedule
      (so jobs submitted together do not poll in lockstep);
    - after ``high`` (a straggler, or a forecast that was wrong): today's schedule again,
      never sparser than its cap.
    A server's ``Retry-After`` is honoured as everywhere.
    """
    if forecast is None:
        return next_poll_delay(attempt, policy=policy, retry_after=retry_after, rand=rand)
    floor = min_step(policy)
    if elapsed < forecast.low:
        return _honour(max(forecast.low - elapsed, floor), retry_after)
    if elapsed < forecast.high:
        step = forecast_step(forecast, policy)
        jittered = step * (1.0 + policy.jitter * (2.0 * rand() - 1.0))
        return _honour(min(max(jittered, floor), policy.max_delay), retry_after)
    return next_poll_delay(attempt, policy=policy, retry_after=retry_after, rand=rand)
