"""The Celery tasks: ``stt.submit`` -> ``stt.poll`` -> ``stt.store``, chained.

Each task is thin: it unpacks a small JSON message, calls a plain function from
``tasks.steps`` and decides about retries. Waiting for the server is never a sleep:
``stt.poll`` re-schedules itself with ``self.retry(countdown=...)``, which frees the worker
slot; the chain's next step (``stt.store``) rides along on the retried message.

A step turned away by a shared limit (``RateLimited``: the API rate limit or the in-flight
cap, see docs/rate-limits.md) re-schedules itself for the wait it was told, with its count
of such deferrals in its arguments: they are not attempts, so they neither use up
``submit_max_retries`` nor lengthen the poll schedule.

A database error in any step is retried with exponential backoff, at most
``DB_MAX_RETRIES`` times: the step is idempotent and the row is the source of truth, so
trying again is always safe, and a step that gives up is re-driven by the sweeper from
its row once it is overdue (tasks/sweep.py). No step retries without bound.

A step that finds another step chain owning its job (``Stale``: the fence of
tasks/lease.py) ends with Celery's ``Ignore``: nothing to store, nothing to pass on.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from celery import Task, chain, shared_task
from celery.exceptions import Ignore
from celery.signals import worker_init
from celery.utils.time import get_exponential_backoff_interval
from sqlalchemy.exc import DBAPIError

from tasks import learn, metrics, retention, runtime
from tasks.broker import broker_countdown, broker_kind
from tasks.callbacks import RetryDelivery, deliver_callback, mark_callback_pending, needs_callback
from tasks.lease import poll_lease
from tasks.models import JobStatus
from tasks.monitoring import ReadableTask
from tasks.polling import PollPolicy, first_poll_delay
from tasks.probe import guarded_probe
from tasks.reschedule import reschedule
from tasks.settings import get_settings
from tasks.speed import SpeedModel
from tasks.steps import (
    Outcome,
    Reschedule,
    Stale,
    SubmitLater,
    UnrecordedSubmit,
    parse_message,
    poll_once,
    resume_ref,
    store_outcome,
    submit_job,
)
from tasks.store import utcnow as _now
from tasks.sweep import CALLBACK_GRACE, Step, find_candidates, find_lost_callbacks, plan_sweep

__all__ = [
    "callback",
    "fit_speed",
    "pipeline_signature",
    "poll",
    "prune",
    "store",
    "submit",
    "sweep",
]

log = logging.getLogger(__name__)

# Database trouble: back off 2, 4, 8 ... up to 60 s, for about 40 minutes in all.
DB_MAX_RETRIES = 40
_DB_RETRY: dict[str, Any] = {
    # Flower and the log show arguments readable and redacted (tasks/monitoring.py).
    "base": ReadableTask,
    "autoretry_for": (DBAPIError,),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": DB_MAX_RETRIES,
}


# submit and poll count their own attempts (submit_max_retries, the poll deadline), so
# Celery's retry cap is off for them: they count their database retries in the message.
_SELF_COUNTED: dict[str, Any] = {"base": ReadableTask, "max_retries": None}
# Delivery attempts are counted on the row; Celery's cap bounds them and the database
# retries together.
_UNCAPPED = {**_DB_RETRY, "max_retries": None}


@worker_init.connect
def _in_worker(**_: Any) -> None:
    runtime.mark_worker()


def _db_retry(self: Task, exc: Exception, retries: int, **retry: Any) -> Exception:
    """Retry after a database error with backoff; past ``DB_MAX_RETRIES`` stop (``Ignore``):
    the row still says when the step was due, and the sweeper re-drives it from there."""
    if retries >= DB_MAX_RETRIES:
        log.error("%s gave up after %d database errors: %s", self.name, retries, exc)
        stop: Exception = Ignore()
        return stop
    delay: int = get_exponential_backoff_interval(
        factor=_DB_RETRY["retry_backoff"],
        retries=retries,
        maximum=_DB_RETRY["retry_backoff_max"],
        full_jitter=True,
    )
    log.warning("%s: database error, retry in %d s: %s", self.name, delay, exc)
    return self.retry(exc=exc, countdown=_later(delay), **retry)  # type: ignore[no-any-return]


def _stale(self: Task, result: Stale) -> Exception:
    log.info("%s stops: %s", self.name, result.reason)
    stop: Exception = Ignore()
    return stop


def _later(seconds: float) -> float:
    """The countdown to publish for this wait on the configured broker (whole seconds on
    RabbitMQ, whose delay queues count in seconds: see ``tasks.broker``)."""
    return broker_countdown(broker_kind(get_settings().broker_url), seconds)


def _release(job_id: str) -> None:
    """The job no longer occupies the API: free its in-flight slot, if there is a cap."""
    in_flight = runtime.get_in_flight()
    if in_flight is not None:
        in_flight.release(job_id)


@shared_task(name="stt.submit", bind=True, **_SELF_COUNTED)
def submit(
    self: Task,
    job_id: str,
    deferrals: int = 0,
    generation_id: str | None = None,
    chain: int = 0,
    db_retries: int = 0,
) -> dict[str, Any]:
    """Create the job at the API once and record its ``generation_id``.

    ``deferrals`` counts the waits a shared limit imposed and ``db_retries`` the database
    errors (neither is an attempt). ``chain`` is the fence this message holds (see
    tasks/lease.py). ``generation_id`` is only set by our own retry after the database
    refused to record a job the API had just created: the retry records it rather than
    create another.
    """
    settings = get_settings()
    started = time.monotonic()
    probing = _ProbeClock()
    try:
        result = submit_job(
            runtime.get_store(),
            runtime.get_client(),
            job_id,
            policy=PollPolicy.from_settings(settings),
            now=_now(),
            claim_for=settings.connect_timeout + settings.read_timeout,
            submit_deadline=settings.submit_deadline,
            max_retries=settings.submit_max_retries,
            chain=chain,
            attempt=self.request.retries - deferrals - db_retries,
            in_flight=runtime.get_in_flight(),
            deferrals=deferrals,
            known_generation_id=generation_id,
            probe=probing if settings.probe_audio else None,
            speed=_speed,
        )
    except UnrecordedSubmit as exc:
        if db_retries >= DB_MAX_RETRIES:  # never create again: end the job with the reason
            message = f"{exc}: gave up after {db_retries} database errors"
            return Outcome(job_id, JobStatus.FAILED, message).to_message()
        again = {"deferrals": deferrals, "generation_id": exc.generation_id, "chain": exc.chain}
        raise _db_retry(
            self, exc, db_retries, kwargs={**again, "db_retries": db_retries + 1}
        ) from None
    except DBAPIError as exc:
        again = {"deferrals": deferrals, "generation_id": generation_id, "chain": chain}
        raise _db_retry(
            self, exc, db_retries, kwargs={**again, "db_retries": db_retries + 1}
        ) from None
    if isinstance(result, Stale):
        raise _stale(self, result)
    if isinstance(result, SubmitLater):
        log.info("job %s: submit again in %.1f s (%s)", job_id, result.delay, result.reason)
        kwargs = {
            "deferrals": deferrals + result.deferred,
            "chain": result.chain,
            "db_retries": db_retries,
        }
        raise self.retry(args=(job_id,), kwargs=kwargs, countdown=_later(result.delay))
    if isinstance(result, Outcome):
        _release(job_id)
    elif (forecast := result.planned()) is not None:
        # The chain's poll was given today's first delay when the job was enqueued, before
        # the duration was known: aim it at the forecast (counted from the submit) instead.
        wanted = first_poll_delay(PollPolicy.from_settings(settings), forecast)
        _first_poll_at(self, _later(max(0.0, wanted - (time.monotonic() - started))))
    elif probing.spent:
        # No forecast: today's first delay after the create, the probe's time included.
        _first_poll_at(self, _later(max(0.0, settings.poll_first_delay - probing.spent)))
    return result.to_message()


_SPEEDS = learn.SpeedCache()


class _ProbeClock:
    """The probe of one submit: the audio's duration read off its first bytes, through
    the callbacks' SSRF rules; ``spent`` keeps how long it took."""

    def __init__(self) -> None:
        self.spent = 0.0

    def __call__(self, url: str) -> float | None:
        began = time.monotonic()
        try:
            return guarded_probe(url, get_settings().callback_allow_networks)
        finally:
            self.spent += time.monotonic() - began


def _speed(model: str) -> SpeedModel | None:
    """The model's learned speed (tasks/learn.py), read at most once a minute."""
    return _SPEEDS.get(runtime.get_store(), model)


def _first_poll_at(task: Task, countdown: float) -> None:
    """Set the countdown of the poll this submit's chain sends next.

    Celery sends a successful task's next chain step from ``request.chain`` after it
    returns (``celery.app.trace``), with the options stored there: the same reliance on
    Celery internals as tasks/reschedule.py, guarded by the end-to-end test of the first
    poll's time (tests/integration/test_duration_polling.py).
    """
    chain_ = task.request.chain
    if chain_:
        chain_[-1].setdefault("options", {})["countdown"] = countdown


@shared_task(name="stt.poll", bind=True, send_events=False, **_SELF_COUNTED)
def poll(self: Task, message: dict[str, Any]) -> dict[str, Any]:
    """Ask the server once; re-schedule itself while the job is pending."""
    ref = parse_message(message)
    if isinstance(ref, Outcome):  # submit already ended the job: pass it on to store
        return message
    settings = get_settings()
    deferrals = int(message.get("deferrals", 0))
    db_retries = int(message.get("db_retries", 0))
    in_flight = runtime.get_in_flight()
    if in_flight is not None:
        in_flight.refresh(ref.job_id)  # it is at the API: keep (or retake) its slot
    try:
        result = poll_once(
            runtime.get_store(),
            runtime.get_client(),
            ref,
            attempt=self.request.retries - deferrals - db_retries,
            policy=PollPolicy.from_settings(settings),
            now=_now(),
        )
    except DBAPIError as exc:
        again = {**message, "db_retries": db_retries + 1}
        raise _db_retry(self, exc, db_retries, args=(again,)) from None
    if isinstance(result, Stale):
        raise _stale(self, result)
    if isinstance(result, Reschedule):
        again = {
            **result.ref.to_message(),
            "deferrals": deferrals + result.deferred,
            "db_retries": db_retries,
        }
        # A planned wait: no Retry exception (tasks/reschedule.py); the new lease rides along.
        reschedule(self, _later(result.delay), args=(again,))
        return again
    _release(ref.job_id)
    return result.to_message()


@shared_task(name="stt.store", bind=True, **_DB_RETRY)
def store(self: Task, message: dict[str, Any]) -> None:
    """Persist the final state: transcript, usage, cost, timings, or the error."""
    outcome = parse_message(message)
    if not isinstance(outcome, Outcome):
        raise TypeError(f"stt.store expects an outcome, got {message!r}")
    _release(outcome.job_id)  # normally done by poll; here too for a re-driven store
    now = _now()
    record = store_outcome(runtime.get_store(), outcome, now=now)
    metrics.job_stored(record, outcome, now)
    if record is not None:
        log.info("job %s stored as %s", record.id, record.status.value)
        if needs_callback(record):  # not for a redelivered store: the row says "pending"
            callback.delay(record.id)
            mark_callback_pending(runtime.get_store(), record.id, now=_now())


@shared_task(name="stt.callback", bind=True, **_UNCAPPED)
def callback(self: Task, job_id: str) -> None:
    """POST the stored result to the job's callback URL, signed; retry until delivered or
    ``STT_CALLBACK_MAX_ATTEMPTS`` (counted on the row, so Celery's own cap is off)."""
    settings = get_settings()
    result = deliver_callback(
        runtime.get_store(),
        job_id,
        secret=settings.callback_secret,
        max_attempts=settings.callback_max_attempts,
        timeout=(settings.connect_timeout, settings.callback_timeout),
        now=_now(),
        allow_networks=settings.callback_allow_networks,
    )
    if isinstance(result, RetryDelivery):
        log.info(
            "job %s: callback attempt %d failed (%s); retry in %.1f s",
            job_id,
            result.attempt,
            result.error,
            result.delay,
        )
        raise self.retry(countdown=_later(result.delay))


@shared_task(name="stt.sweep", ignore_result=True)
def sweep(grace: float | None = None) -> dict[str, int]:
    """Re-drive the step of each overdue job (beat sends this every STT_SWEEP_INTERVAL).

    ``grace`` defaults to ``STT_SWEEP_GRACE``; given explicitly (tests, operators), it
    also replaces the callbacks' longer grace.
    """
    settings = get_settings()
    store_ = runtime.get_store()
    now = _now()
    policy = PollPolicy.from_settings(settings)
    step_grace = settings.sweep_grace if grace is None else grace
    plan = plan_sweep(
        find_candidates(store_, now=now, grace=step_grace),
        now=now,
        grace=step_grace,
        submit_deadline=settings.submit_deadline,
        poll_deadline=policy.deadline,
    )
    counts = {step.value: 0 for step in Step} | {"callback": 0}
    for action in plan:
        # The step is due now; its lease covers queueing, as a poll's does.
        lease = poll_lease(now)
        if not store_.redrive(action.job_id, chain=action.chain, due_at=lease):
            continue  # its chain moved on since the read: it is alive
        owner = action.chain + 1
        counts[action.step.value] += 1
        if action.step is Step.SUBMIT:
            pipeline_signature(action.job_id, owner=owner).apply_async()
        elif action.step is Step.POLL:
            record = store_.get(action.job_id)
            ref = (
                None
                if record is None
                else resume_ref(record, policy, chain=owner, lease=lease.timestamp())
            )
            if ref is not None:
                chain(poll.s(ref.to_message()), store.s()).apply_async()
        elif action.step is Step.STORE:
            record = store_.get(action.job_id)
            if record is not None:
                finished = (
                    JobStatus.COMPLETED if record.server_status == "completed" else JobStatus.ERROR
                )
                store.delay(Outcome(action.job_id, finished, record.error).to_message())
        else:
            store.delay(Outcome(action.job_id, JobStatus.TIMEOUT, action.reason).to_message())
    callback_grace = max(step_grace, CALLBACK_GRACE) if grace is None else grace
    for job_id in find_lost_callbacks(store_, now=now, grace=callback_grace):
        callback.delay(job_id)
        mark_callback_pending(store_, job_id, now=now)
        counts["callback"] += 1
    metrics.sweep_redrove(counts)
    if any(counts.values()):
        log.warning("sweep re-drove overdue jobs: %s", counts)
    return counts


@shared_task(name="stt.prune", ignore_result=True)
def prune(
    days: float,
    keep_text: bool = False,
    batches_left: int = retention.SCHEDULE_BATCHES,
    cutoff: str | None = None,
) -> dict[str, Any]:
    """Delete (or empty) finished jobs older than ``days`` (beat, when STT_RETENTION_DAYS
    is set; see tasks/retention.py). A run does a bounded number of batches.

    On SQLite, whose one write lock a batch holds, the batches are spaced so the workers'
    writes get in: one batch per task, the next sent with a ``SQLITE_PAUSE`` countdown
    (never a sleep that holds a worker slot), the same cutoff and the budget left.
    """
    store_ = runtime.get_store()
    at = (
        datetime.fromisoformat(cutoff)
        if cutoff is not None
        else retention.cutoff_for(timedelta(days=days), now=_now())
    )
    spaced = store_.engine.dialect.name == "sqlite"
    report = retention.prune(
        store_, cutoff=at, keep_text=keep_text, max_batches=1 if spaced else batches_left
    )
    left = batches_left - report.batches
    if spaced and not report.complete and left > 0:
        prune.apply_async(
            kwargs={
                "days": days,
                "keep_text": keep_text,
                "batches_left": left,
                "cutoff": at.isoformat(),
            },
            countdown=_later(retention.SQLITE_PAUSE),
        )
    return {"rows": report.rows, "batches": report.batches, "complete": report.complete}


@shared_task(name="stt.fit_speed", ignore_result=True)
def fit_speed() -> dict[str, Any]:
    """Refit each model's speed from its recent finished jobs (beat, every
    ``STT_SPEED_FIT_INTERVAL``; tasks/learn.py). A model with too few jobs gets no speed:
    its jobs keep today's schedule."""
    report = learn.fit_speed_models(runtime.get_store(), now=_now())
    _SPEEDS.clear()  # this process sees the new speeds at once; others within a minute
    for model, speed in report.fitted.items():
        log.info("speed of %s from %d jobs: %s", model, report.jobs[model], speed)
    return {"fitted": sorted(report.fitted), "too_few": report.too_few}


def pipeline_signature(job_id: str, *, owner: int = 0) -> Any:
    """The chain for one job; ``.apply_async()`` it to start the job.

    The first poll waits ``STT_POLL_FIRST_DELAY`` after the submit: no server finishes a
    job the instant it was created (it is queued first), so an immediate poll only costs a
    request; waiting saves about one API request per job at no lag (docs/benchmarks.md,
    benchmark 2). A submit that failed passes its outcome on after that wait too.
    ``owner`` is the fence the submit holds: 0 for a new job, the sweeper's for a re-drive.
    """
    first = _later(get_settings().poll_first_delay)
    head = submit.si(job_id, chain=owner) if owner else submit.si(job_id)
    return chain(head, poll.s().set(countdown=first), store.s())
