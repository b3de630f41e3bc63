"""Learn each model's speed from the store, and hand it to the submit step cheaply.

``fit_speed_models`` (beat's ``stt.fit_speed``, every ``STT_SPEED_FIT_INTERVAL``) reads the
recently stored, completed jobs, turns each into a ``tasks.speed.Observation`` (seconds of
audio; the server finished between the last pending sighting and the poll that saw it
done, both counted from the submit) and fits ``tasks.speed.fit`` per model. A model with a
fit gets a row in ``stt_speed_models``; a model with too few jobs (``speed.MIN_JOBS``)
loses its row, so its jobs keep today's schedule.

Why a table and not a Redis key with a TTL: the store is the one service every deployment
has (the broker may be RabbitMQ or the filesystem, with no Redis at all), the row survives
restarts, and ``stt-workers`` can show it. The submit step reads it through
``SpeedCache``: one small SELECT per model per ``CACHE_SECONDS`` per process, not one per
job; the poll never reads it (the forecast rides in the poll message).
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from tasks.models import JobStatus
from tasks.schema import JobRow, SpeedRow
from tasks.speed import Observation, SpeedModel, fit
from tasks.store import Store

__all__ = [
    "CACHE_SECONDS",
    "MAX_JOBS_PER_MODEL",
    "WINDOW",
    "FitReport",
    "SpeedCache",
    "fit_speed_models",
    "load_speed_models",
    "observations",
    "save_speed_models",
    "speed_row",
]

# Jobs stored within this window teach the fit: long enough for a quiet model to gather
# MIN_JOBS, short enough to follow a vendor whose speed changes.
WINDOW = timedelta(days=7)
# The most recent jobs per model that are fitted on (the fit is O(jobs x 40)).
MAX_JOBS_PER_MODEL = 2000
# How long a process trusts the speed models it read: a refit shows within this time.
CACHE_SECONDS = 60.0


def observations(
    store: Store, *, now: datetime, window: timedelta = WINDOW
) -> dict[str, list[Observation]]:
    """Per model, the completed jobs stored within ``window`` whose duration is known
    (given, probed, or reported by the API), newest first, at most
    ``MAX_JOBS_PER_MODEL`` each."""
    duration = func.coalesce(JobRow.duration, JobRow.audio_seconds)
    query = (
        select(JobRow.model, duration, JobRow.submitted_at, JobRow.pending_at, JobRow.finished_at)
        .where(
            JobRow.stored_at >= now - window,
            JobRow.status == JobStatus.COMPLETED.value,
            JobRow.submitted_at.is_not(None),
            JobRow.finished_at.is_not(None),
            duration.is_not(None),
        )
        .order_by(JobRow.stored_at.desc())
    )
    found: dict[str, list[Observation]] = defaultdict(list)
    with store.session() as session:
        for model, seconds, submitted, pending, finished in session.execute(query):
            bucket = found[model]
            if len(bucket) >= MAX_JOBS_PER_MODEL or submitted is None or finished is None:
                continue
            start = submitted.timestamp()
            upper = finished.timestamp() - start
            lower = 0.0 if pending is None else max(0.0, pending.timestamp() - start)
            if upper > 0 and lower <= upper:
                bucket.append(Observation(float(seconds), lower, upper))
    return dict(found)


@dataclass(frozen=True, slots=True)
class FitReport:
    """What a fit run did: the models that got a speed, and those left without one."""

    fitted: dict[str, SpeedModel]
    jobs: dict[str, int]  # model -> jobs its fit used
    too_few: dict[str, int]  # model -> usable jobs, below speed.MIN_JOBS


def speed_row(model: str, speed: SpeedModel, jobs: int, fitted_at: datetime) -> SpeedRow:
    """The ``stt_speed_models`` row that saves ``speed`` for ``model``, fitted on ``jobs``."""
    return SpeedRow(
        model=model,
        queue=speed.queue,
        rate=speed.rate,
        sigma=speed.sigma,
        queue_spread=speed.queue_spread,
        jobs=jobs,
        fitted_at=fitted_at,
    )


def fit_speed_models(store: Store, *, now: datetime, window: timedelta = WINDOW) -> FitReport:
    """Fit every model seen in ``window`` and replace the table's rows with the result."""
    fitted: dict[str, SpeedModel] = {}
    jobs: dict[str, int] = {}
    too_few: dict[str, int] = {}
    for model, seen in observations(store, now=now, window=window).items():
        speed = fit(seen)
        if speed is None:
            too_few[model] = len(seen)
        else:
            fitted[model], jobs[model] = speed, len(seen)
    save_speed_models(store, fitted, jobs, now=now)
    return FitReport(fitted, jobs, too_few)


def save_speed_models(
    store: Store, fitted: dict[str, SpeedModel], jobs: dict[str, int], *, now: datetime
) -> None:
    """Replace every row of ``stt_speed_models`` with ``fitted`` (``jobs``: each model's
    job count); an empty ``fitted`` leaves every model on today's schedule."""
    with store.session() as session:
        # One transaction: readers see the old rows or the new ones, never none.
        session.execute(delete(SpeedRow))
        for model, speed in fitted.items():
            session.add(speed_row(model, speed, jobs[model], now))


def load_speed_models(store: Store) -> dict[str, SpeedModel]:
    """Every stored speed model; a row that is not a valid model is skipped."""
    models: dict[str, SpeedModel] = {}
    with store.session() as session:
        for row in session.scalars(select(SpeedRow)):
            values = (row.queue, row.rate, row.sigma, row.queue_spread)
            if all(isinstance(v, float | int) and math.isfinite(v) and v >= 0 for v in values):
                models[row.model] = SpeedModel(*map(float, values))
    return models


class SpeedCache:
    """The stored speed models, read at most once per ``ttl`` seconds per process.

    A failed read (the table missing on a database not yet migrated, a lost connection)
    means no models until the next try: the jobs keep today's schedule.
    """

    def __init__(
        self, ttl: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl, self._clock = ttl, clock
        self._lock = threading.Lock()
        self._models: dict[str, SpeedModel] = {}
        self._expires = -math.inf

    def get(self, store: Store, model: str) -> SpeedModel | None:
        with self._lock:
            if self._clock() >= self._expires:
                try:
                    self._models = load_speed_models(store)
                except Exception:  # a forecast is an optimisation, never a failure
                    self._models = {}
                self._expires = self._clock() + self._ttl
            return self._models.get(model)

    def clear(self) -> None:
        with self._lock:
            self._expires = -math.inf
