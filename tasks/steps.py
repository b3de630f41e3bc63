"""The three steps of a job as plain functions: submit, poll once, store.

The Celery tasks in ``tasks.pipeline`` only unpack ids, call these and decide whether to
retry. Everything here takes its collaborators (store, client, clock, policy) as
arguments, so it is testable without a broker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import DataError, DBAPIError

from tasks.client import STTClient
from tasks.envelopes import truncate
from tasks.errors import PermanentError, RateLimited, TransientError
from tasks.inflight import InFlightLimiter
from tasks.models import JobStatus, Phase, Transcript
from tasks.normalize import normalize
from tasks.polling import PollPolicy, next_poll_delay
from tasks.pricing import estimate_cost
from tasks.redact import redact_url
from tasks.slim import slim_result
from tasks.store import JobRecord, Store

__all__ = [
    "Outcome",
    "PollRef",
    "Reschedule",
    "UnrecordedSubmit",
    "finish_completed",
    "poll_once",
    "store_outcome",
    "submit_job",
]

log = logging.getLogger(__name__)

# What a database refuses for the value written, not for its own trouble: PostgreSQL's
# DataError (NUL in text, integer out of range, NaN in json), SQLite's driver errors for
# an int past 64 bits. Trying again cannot help. (A lost connection is an OperationalError:
# the task's retry handles it.)
UNSTORABLE = (DataError, ArithmeticError, ValueError, TypeError)


def unstorable_reason(exc: BaseException) -> str:
    """Why the database refused, without the statement or its parameters."""
    cause = getattr(exc, "orig", None) or exc
    first = str(cause).strip().splitlines()[:1]
    return truncate(f"{type(cause).__name__}: {first[0] if first else 'no detail'}", 200)


@dataclass(frozen=True, slots=True)
class PollRef:
    """What the poll step needs, small enough to ride in a task message."""

    job_id: str
    generation_id: str
    deadline: float  # epoch seconds
    # Polls made before this message: a job the sweeper re-drives keeps counting (and
    # keeps its place in the backoff schedule) instead of starting again from zero.
    polls: int = 0
    # When the API last said "not finished" (epoch s): the create, then each pending poll.
    # The server finished after it; tasks.metrics estimates detection lag from it.
    pending_at: float | None = None

    def to_message(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "generation_id": self.generation_id,
            "deadline": self.deadline,
            "polls": self.polls,
            "pending_at": self.pending_at,
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a job ended, handed from poll to store. The result itself waits in the row."""

    job_id: str
    status: JobStatus
    error: str | None = None
    pending_at: float | None = None  # PollRef.pending_at of the poll that saw the end

    def to_message(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "status": self.status.value,
            "error": self.error,
            "pending_at": self.pending_at,
        }


@dataclass(frozen=True, slots=True)
class Reschedule:
    """Poll again after ``delay`` seconds; ``pending_at`` goes into the next message."""

    delay: float
    reason: str
    pending_at: float | None = None


def parse_message(message: dict[str, Any]) -> PollRef | Outcome:
    """The inverse of ``to_message`` for whichever of the two it was."""
    pending_at = message.get("pending_at")  # absent in messages from before the field
    pending_at = None if pending_at is None else float(pending_at)
    if "status" in message:
        return Outcome(
            message["job_id"], JobStatus(message["status"]), message.get("error"), pending_at
        )
    return PollRef(
        message["job_id"],
        message["generation_id"],
        float(message["deadline"]),
        int(message.get("polls", 0)),  # absent in messages from before the field existed
        pending_at,
    )


def _deadline(record: JobRecord, policy: PollPolicy) -> float:
    started = record.submitted_at or record.enqueued_at
    return started.timestamp() + policy.deadline


def resume_ref(record: JobRecord, policy: PollPolicy) -> PollRef | None:
    """The poll reference of a submitted job, rebuilt from its row (None if not submitted)."""
    if record.generation_id is None:
        return None
    return PollRef(record.id, record.generation_id, _deadline(record, policy), record.polls)


class UnrecordedSubmit(Exception):
    """The API created the job but the database refused its ``generation_id``.

    The task retries with the id in hand (``known_generation_id``) so the retry records it
    instead of creating a second, orphaned job at the API.
    """

    def __init__(self, job_id: str, generation_id: str) -> None:
        super().__init__(f"job {job_id}: created as {generation_id}, not yet recorded")
        self.job_id = job_id
        self.generation_id = generation_id


def submit_job(
    store: Store,
    client: STTClient,
    job_id: str,
    *,
    policy: PollPolicy,
    now: datetime,
    in_flight: InFlightLimiter | None = None,
    deferrals: int = 0,
    known_generation_id: str | None = None,
) -> PollRef | Outcome:
    """Create the server-side job once, record its id, hand over to polling.

    A redelivered submit finds the generation id already on the row and does not create a
    second job at the API. ``TransientError`` propagates: the task retries it; so does
    ``RateLimited`` (the in-flight cap or the rate limit said "not yet", nothing was sent).
    A database error right after the create raises ``UnrecordedSubmit`` carrying the new
    id; the retry passes it back as ``known_generation_id`` and only records it.
    """
    record = store.get(job_id)
    if record is None:
        return Outcome(job_id, JobStatus.FAILED, f"job {job_id} is not in the store")
    if record.done:
        return Outcome(job_id, record.status, record.error)
    ref = resume_ref(record, policy)
    if ref is not None:
        return ref
    if known_generation_id is not None:
        store.mark_submitted(job_id, known_generation_id, now=now)
        return PollRef(
            job_id, known_generation_id, now.timestamp() + policy.deadline, 0, now.timestamp()
        )
    if in_flight is not None:
        in_flight.acquire(job_id, deferrals=deferrals)
    try:
        generation = client.create(
            model=record.model,
            url=record.url,
            language=record.language,
            prompt=record.prompt,
            temperature=record.temperature,
        )
    except PermanentError as exc:
        store.count_submit_attempt(job_id)
        # The error already says how it was refused ("rejected: ...", "unauthorized ...").
        return Outcome(job_id, JobStatus.FAILED, f"submit {exc}")
    try:
        store.mark_submitted(job_id, generation.generation_id, now=now)
    except DBAPIError as exc:
        raise UnrecordedSubmit(job_id, generation.generation_id) from exc
    log.info(
        "job %s submitted as %s (%s, %s)",
        job_id,
        generation.generation_id,
        record.model,
        redact_url(record.url),
    )
    deadline = now.timestamp() + policy.deadline
    return PollRef(job_id, generation.generation_id, deadline, 0, now.timestamp())


def poll_once(
    store: Store,
    client: STTClient,
    ref: PollRef,
    *,
    attempt: int,
    policy: PollPolicy,
    now: datetime,
) -> Reschedule | Outcome:
    """Ask the server once; say when to ask again, or how the job ended.

    ``attempt`` counts this message's retries; ``ref.polls`` the polls before it (a
    re-driven job), so the count and the backoff carry on where they were.
    """
    attempt += ref.polls
    polls = attempt + 1
    if now.timestamp() >= ref.deadline:
        return Outcome(
            ref.job_id,
            JobStatus.TIMEOUT,
            f"no final status within the {policy.deadline:.0f} s deadline "
            f"after {attempt} polls (generation {ref.generation_id})",
        )
    try:
        generation = client.get(ref.generation_id)
    except RateLimited:
        raise  # not a poll: the task waits its turn without touching the schedule
    except TransientError as exc:
        delay = next_poll_delay(attempt, policy=policy, retry_after=exc.retry_after)
        return _reschedule(store, ref, None, polls, delay, now, f"transient: {exc}", ref.pending_at)
    except PermanentError as exc:
        return Outcome(ref.job_id, JobStatus.FAILED, f"poll failed: {exc}")

    if generation.phase is Phase.PENDING:
        if not generation.known_status:
            log.warning(
                "job %s: unknown server status %r, treated as pending",
                ref.job_id,
                generation.status,
            )
        delay = next_poll_delay(attempt, policy=policy)
        return _reschedule(
            store, ref, generation.status, polls, delay, now, generation.status, now.timestamp()
        )

    try:
        store.land_result(
            ref.job_id,
            server_status=generation.status,
            raw_result=generation.result,
            error=generation.error,
            polls=polls,
            finished_at=now,
        )
    except UNSTORABLE as exc:
        # Retrying cannot make the database take this answer: end the job, keep why.
        reason = f"the server's answer could not be stored: {unstorable_reason(exc)}"
        store.land_result(
            ref.job_id,
            server_status=generation.status,
            raw_result=None,
            error=reason,
            polls=polls,
            finished_at=now,
        )
        return Outcome(ref.job_id, JobStatus.FAILED, reason)
    if generation.phase is Phase.COMPLETED:
        return Outcome(ref.job_id, JobStatus.COMPLETED, pending_at=ref.pending_at)
    return Outcome(
        ref.job_id,
        JobStatus.ERROR,
        generation.error or f"the server ended the job with status {generation.status!r}",
        ref.pending_at,
    )


def _reschedule(
    store: Store,
    ref: PollRef,
    server_status: str | None,
    polls: int,
    delay: float,
    now: datetime,
    reason: str,
    pending_at: float | None,
) -> Reschedule:
    # Never sleep past the deadline: the last poll lands on it and reports the timeout.
    delay = max(0.0, min(delay, ref.deadline - now.timestamp()))
    store.record_poll(
        ref.job_id,
        server_status=server_status,
        polls=polls,
        next_poll_at=now + timedelta(seconds=delay),
    )
    return Reschedule(delay, reason, pending_at)


def store_outcome(store: Store, outcome: Outcome, *, now: datetime) -> JobRecord | None:
    """Write the job's final row: transcript, usage, cost, or the error. Idempotent.

    Returns the row as stored (None for an unknown job). A failed or timed-out outcome
    needs nothing from the row, so it is one guarded UPDATE; only a completed one reads the
    row first, for the result ``land_result`` kept there.
    """
    if outcome.status is not JobStatus.COMPLETED:
        return store.finish_and_get(outcome.job_id, outcome.status, error=outcome.error, now=now)
    record = store.get(outcome.job_id)
    if record is None or record.done:
        return record
    try:
        transcript = normalize(record.raw_result, model=record.model)
    except PermanentError as exc:
        return store.finish_and_get(
            record.id, JobStatus.FAILED, error=f"unreadable result: {exc}", now=now
        )
    except Exception as exc:
        # A result normalize cannot read is a bug or a broken answer, never a passing
        # fault: the row does not change, so a retry (or the sweeper's re-drive) would
        # fail the same way forever. End the job; the log keeps the traceback.
        log.exception("job %s: reading its result failed", record.id)
        error = f"unreadable result: {type(exc).__name__}"
        return store.finish_and_get(record.id, JobStatus.FAILED, error=error, now=now)
    return finish_completed(store, record, transcript, now=now)


def finish_completed(
    store: Store, record: JobRecord, transcript: Transcript, *, now: datetime
) -> JobRecord | None:
    """Store the transcript; a transcript the database refuses ends the job ``failed``.

    ``normalize`` hands over only bounded numbers and text without NUL, so the refusal is
    the last line of defence: without it the row would stay unfinished and the sweeper
    would re-drive the store step every few minutes, forever.
    """
    try:
        return store.finish_and_get(
            record.id,
            JobStatus.COMPLETED,
            transcript=transcript,
            # The columns now hold the transcript: keep the vendor's answer without it.
            raw_result=slim_result(record.raw_result, transcript, model=record.model),
            cost_usd=estimate_cost(record.model, transcript.usage),
            now=now,
        )
    except UNSTORABLE as exc:
        error = f"the result could not be stored: {unstorable_reason(exc)}"
        log.warning("job %s: %s", record.id, error)
        return store.finish_and_get(record.id, JobStatus.FAILED, error=error, now=now)
