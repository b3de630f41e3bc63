"""The Celery tasks: ``stt.submit`` -> ``stt.poll`` -> ``stt.store``, chained.

Each task is thin: it unpacks a small JSON message, calls a plain function from
``tasks.steps`` and decides about retries. Waiting for the server is never a sleep:
``stt.poll`` re-schedules itself with ``self.retry(countdown=...)``, which frees the worker
slot; the chain's next step (``stt.store``) rides along on the retried message.

A database error in any step is retried by Celery's own ``autoretry_for`` backoff: the
step is idempotent and the row is the source of truth, so trying again is always safe.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, chain, shared_task
from celery.utils.time import get_exponential_backoff_interval
from sqlalchemy.exc import DBAPIError

from tasks import runtime
from tasks.errors import TransientError
from tasks.models import JobStatus
from tasks.polling import PollPolicy, submit_retry_delay
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

__all__ = ["pipeline_signature", "poll", "store", "submit", "sweep"]

log = logging.getLogger(__name__)

# Database trouble: back off 2, 4, 8 ... up to 60 s, for about 40 minutes in all.
_DB_RETRY: dict[str, Any] = {
    "autoretry_for": (DBAPIError,),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 40,
}


# submit and poll count their own attempts (submit_max_retries, the poll deadline), so
# Celery's retry cap is off for them; it still bounds store's database retries.
_UNCAPPED = {**_DB_RETRY, "max_retries": None}


@shared_task(name="stt.submit", bind=True, **_UNCAPPED)
def submit(self: Task, job_id: str, generation_id: str | None = None) -> dict[str, Any]:
    """Create the job at the API once and record its ``generation_id``.

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
            known_generation_id=generation_id,
        )
    except UnrecordedSubmit as exc:
        delay = get_exponential_backoff_interval(
            factor=_DB_RETRY["retry_backoff"],
            retries=self.request.retries,
            maximum=_DB_RETRY["retry_backoff_max"],
            full_jitter=True,
        )
        log.warning("%s: database error, recording it in %d s", exc, delay)
        raise self.retry(
            args=(job_id,), kwargs={"generation_id": exc.generation_id}, countdown=delay
        ) from None
    except TransientError as exc:
        attempt = self.request.retries
        runtime.get_store().count_submit_attempt(job_id)
        if attempt >= settings.submit_max_retries:
            message = f"submit gave up after {attempt + 1} attempts: {exc}"
            return Outcome(job_id, JobStatus.FAILED, message).to_message()
        delay = submit_retry_delay(attempt, retry_after=exc.retry_after)
        log.info("job %s: submit retry %d in %.1f s (%s)", job_id, attempt + 1, delay, exc)
        raise self.retry(countdown=delay) from None
    return result.to_message()


@shared_task(name="stt.poll", bind=True, **_UNCAPPED)
def poll(self: Task, message: dict[str, Any]) -> dict[str, Any]:
    """Ask the server once; re-schedule itself while the job is pending."""
    ref = parse_message(message)
    if isinstance(ref, Outcome):  # submit already ended the job: pass it on to store
        return message
    settings = get_settings()
    result = poll_once(
        runtime.get_store(),
        runtime.get_client(),
        ref,
        attempt=self.request.retries,
        policy=PollPolicy.from_settings(settings),
        now=_now(),
    )
    if isinstance(result, Reschedule):
        raise self.retry(countdown=result.delay)
    return result.to_message()


@shared_task(name="stt.store", bind=True, **_DB_RETRY)
def store(self: Task, message: dict[str, Any]) -> None:
    """Persist the final state: transcript, usage, cost, timings, or the error."""
    outcome = parse_message(message)
    if not isinstance(outcome, Outcome):
        raise TypeError(f"stt.store expects an outcome, got {message!r}")
    record = store_outcome(runtime.get_store(), outcome, now=_now())
    if record is not None:
        log.info("job %s stored as %s", record.id, record.status.value)


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
    counts = {"submit": len(overdue.submit), "poll": len(overdue.poll), "store": len(overdue.store)}
    if any(counts.values()):
        log.warning("sweep re-drove overdue jobs: %s", counts)
    return counts


def pipeline_signature(job_id: str) -> Any:
    """The chain for one job; ``.apply_async()`` it to start the job."""
    return chain(submit.si(job_id), poll.s(), store.s())
