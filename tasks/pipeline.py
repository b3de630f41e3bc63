"""The Celery tasks: ``stt.submit`` -> ``stt.poll`` -> ``stt.store``, chained.

Each task is thin: it unpacks a small JSON message, calls a plain function from
``tasks.steps`` and decides about retries. Waiting for the server is never a sleep:
``stt.poll`` re-schedules itself with ``self.retry(countdown=...)``, which frees the worker
slot; the chain's next step (``stt.store``) rides along on the retried message.

A step turned away by a shared limit (``RateLimited``: the API rate limit or the in-flight
cap, see docs/rate-limits.md) re-schedules itself for the wait it was told, with its count
of such deferrals in its arguments: they are not attempts, so they neither use up
``submit_max_retries`` nor lengthen the poll schedule.

A database error in any step is retried by Celery's own ``autoretry_for`` backoff: the
step is idempotent and the row is the source of truth, so trying again is always safe.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import Task, chain, shared_task
from celery.signals import worker_init
from celery.utils.time import get_exponential_backoff_interval
from sqlalchemy.exc import DBAPIError

from tasks import metrics, retention, runtime
from tasks.callbacks import RetryDelivery, deliver_callback, mark_callback_pending, needs_callback
from tasks.errors import RateLimited, TransientError
from tasks.models import JobStatus
from tasks.monitoring import ReadableTask
from tasks.polling import PollPolicy, submit_retry_delay
from tasks.reschedule import reschedule
from tasks.settings import get_settings
from tasks.steps import (
    Outcome,
    Reschedule,
    UnrecordedSubmit,
    parse_message,
    poll_once,
    resume_ref,
    store_outcome,
    submit_job,
)
from tasks.store import utcnow as _now
from tasks.sweep import DEFAULT_GRACE, find_overdue

__all__ = ["callback", "pipeline_signature", "poll", "prune", "store", "submit", "sweep"]

log = logging.getLogger(__name__)

# Database trouble: back off 2, 4, 8 ... up to 60 s, for about 40 minutes in all.
_DB_RETRY: dict[str, Any] = {
    # Flower and the log show arguments readable and redacted (tasks/monitoring.py).
    "base": ReadableTask,
    "autoretry_for": (DBAPIError,),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 40,
}


# submit and poll count their own attempts (submit_max_retries, the poll deadline), so
# Celery's retry cap is off for them; it still bounds store's database retries.
_UNCAPPED = {**_DB_RETRY, "max_retries": None}


@worker_init.connect
def _in_worker(**_: Any) -> None:
    runtime.mark_worker()


def _defer(self: Task, job_id: str, exc: RateLimited, **retry: Any) -> Exception:
    """Re-schedule the step after the wait a shared limit asked for (not an attempt)."""
    runtime.get_store().defer(job_id, until=_now() + timedelta(seconds=exc.retry_after))
    log.debug("job %s: %s waits %.2f s (%s)", job_id, self.name, exc.retry_after, exc)
    return self.retry(countdown=exc.retry_after, **retry)  # type: ignore[no-any-return]


def _release(job_id: str) -> None:
    """The job no longer occupies the API: free its in-flight slot, if there is a cap."""
    in_flight = runtime.get_in_flight()
    if in_flight is not None:
        in_flight.release(job_id)


@shared_task(name="stt.submit", bind=True, **_UNCAPPED)
def submit(
    self: Task, job_id: str, deferrals: int = 0, generation_id: str | None = None
) -> dict[str, Any]:
    """Create the job at the API once and record its ``generation_id``.

    ``deferrals`` counts the waits a shared limit imposed (they are not attempts).
    ``generation_id`` is only set by our own retry after the database refused to record
    a job the API had just created: the retry records it rather than create another.
    """
    settings = get_settings()
    try:
        result = submit_job(
            runtime.get_store(),
            runtime.get_client(),
            job_id,
            policy=PollPolicy.from_settings(settings),
            now=_now(),
            in_flight=runtime.get_in_flight(),
            deferrals=deferrals,
            known_generation_id=generation_id,
        )
    except RateLimited as exc:
        raise _defer(self, job_id, exc, kwargs={"deferrals": deferrals + 1}) from None
    except UnrecordedSubmit as exc:
        delay = get_exponential_backoff_interval(
            factor=_DB_RETRY["retry_backoff"],
            retries=self.request.retries,
            maximum=_DB_RETRY["retry_backoff_max"],
            full_jitter=True,
        )
        log.warning("%s: database error, recording it in %d s", exc, delay)
        raise self.retry(
            args=(job_id,),
            kwargs={"deferrals": deferrals, "generation_id": exc.generation_id},
            countdown=delay,
        ) from None
    except TransientError as exc:
        attempt = self.request.retries - deferrals
        runtime.get_store().count_submit_attempt(job_id)
        if attempt >= settings.submit_max_retries:
            message = f"submit gave up after {attempt + 1} attempts: {exc}"
            _release(job_id)
            return Outcome(job_id, JobStatus.FAILED, message).to_message()
        delay = submit_retry_delay(attempt, retry_after=exc.retry_after)
        log.info("job %s: submit retry %d in %.1f s (%s)", job_id, attempt + 1, delay, exc)
        raise self.retry(countdown=delay) from None
    if isinstance(result, Outcome):
        _release(job_id)
    return result.to_message()


@shared_task(name="stt.poll", bind=True, send_events=False, **_UNCAPPED)
def poll(self: Task, message: dict[str, Any]) -> dict[str, Any]:
    """Ask the server once; re-schedule itself while the job is pending."""
    ref = parse_message(message)
    if isinstance(ref, Outcome):  # submit already ended the job: pass it on to store
        return message
    settings = get_settings()
    deferrals = int(message.get("deferrals", 0))
    in_flight = runtime.get_in_flight()
    if in_flight is not None:
        in_flight.refresh(ref.job_id)  # it is at the API: keep (or retake) its slot
    try:
        result = poll_once(
            runtime.get_store(),
            runtime.get_client(),
            ref,
            attempt=self.request.retries - deferrals,
            policy=PollPolicy.from_settings(settings),
            now=_now(),
        )
    except RateLimited as exc:
        again = {**message, "deferrals": deferrals + 1}
        raise _defer(self, ref.job_id, exc, args=(again,)) from None
    if isinstance(result, Reschedule):
        again = {**message, "pending_at": result.pending_at}  # for tasks.metrics' lag
        # A planned wait: no Retry exception (tasks/reschedule.py).
        reschedule(self, result.delay, args=(again,))
        return message
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
        raise self.retry(countdown=result.delay)


@shared_task(name="stt.sweep", ignore_result=True)
def sweep(grace: float = DEFAULT_GRACE) -> dict[str, int]:
    """Re-enqueue the step each overdue job needs (run it periodically from beat)."""
    store_ = runtime.get_store()
    now = _now()
    overdue = find_overdue(store_, now=now, grace=grace)
    policy = PollPolicy.from_settings(get_settings())
    for job_id in overdue.submit:
        pipeline_signature(job_id).apply_async()
    for job_id in overdue.poll:
        record = store_.get(job_id)
        ref = resume_ref(record, policy) if record is not None else None
        if ref is not None:
            chain(poll.s(ref.to_message()), store.s()).apply_async()
    for job_id in overdue.store:
        record = store_.get(job_id)
        if record is not None:
            finished = (
                JobStatus.COMPLETED if record.server_status == "completed" else JobStatus.ERROR
            )
            store.delay(Outcome(job_id, finished, record.error).to_message())
    for job_id in overdue.callback:
        callback.delay(job_id)
        mark_callback_pending(store_, job_id, now=now)
    counts = {
        "submit": len(overdue.submit),
        "poll": len(overdue.poll),
        "store": len(overdue.store),
        "callback": len(overdue.callback),
    }
    metrics.sweep_redrove(counts)
    if any(counts.values()):
        log.warning("sweep re-drove overdue jobs: %s", counts)
    return counts


@shared_task(name="stt.prune", ignore_result=True)
def prune(days: float, keep_text: bool = False) -> dict[str, Any]:
    """Delete (or empty) finished jobs older than ``days`` (beat, when STT_RETENTION_DAYS
    is set; see tasks/retention.py). A run does a bounded number of batches."""
    report = retention.prune(
        runtime.get_store(),
        cutoff=retention.cutoff_for(timedelta(days=days), now=_now()),
        keep_text=keep_text,
        max_batches=retention.SCHEDULE_BATCHES,
    )
    return {"rows": report.rows, "batches": report.batches, "complete": report.complete}


def pipeline_signature(job_id: str) -> Any:
    """The chain for one job; ``.apply_async()`` it to start the job.

    The first poll waits ``STT_POLL_FIRST_DELAY`` after the submit: no server finishes a
    job the instant it was created (it is queued first), so an immediate poll only costs a
    request; waiting saves about one API request per job at no lag (docs/benchmarks.md,
    benchmark 2). A submit that failed passes its outcome on after that wait too.
    """
    first = get_settings().poll_first_delay
    return chain(submit.si(job_id), poll.s().set(countdown=first), store.s())
