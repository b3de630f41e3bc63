"""The three steps of a job as plain functions: submit, poll once, store.

The Celery tasks in ``tasks.pipeline`` only unpack ids, call these and decide whether to
retry. Everything here takes its collaborators (store, client, clock, policy) as
arguments, so it is testable without a broker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import DataError, DBAPIError

from tasks.client import STTClient
from tasks.envelopes import truncate
from tasks.errors import PermanentError, RateLimited, TransientError
from tasks.inflight import InFlightLimiter
from tasks.lease import claim_lease, needs_renewal, poll_lease
from tasks.models import JobStatus, Phase, Transcript
from tasks.normalize import normalize
from tasks.polling import (
    SUBMIT_MAX_RETRIES,
    Forecast,
    PollPolicy,
    first_poll_delay,
    planned_poll_delay,
    submit_retry_delay,
)
from tasks.pricing import estimate_cost
from tasks.redact import redact_url
from tasks.slim import slim_result
from tasks.speed import SpeedModel
from tasks.store import JobRecord, Store, status_for_row

__all__ = [
    "Outcome",
    "PollRef",
    "Reschedule",
    "Stale",
    "SubmitLater",
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
    # The fence this poll chain holds (tasks/lease.py), the lease it last wrote (epoch
    # seconds; None: unknown, renew at once) and the status word the row holds as of it.
    chain: int = 0
    lease: float | None = None
    status: str | None = None
    # When the API last said "not finished" (epoch s): the create, then each pending poll.
    # The server finished after it; tasks.metrics estimates detection lag from it.
    pending_at: float | None = None
    # When the server is likely to finish (low, mid, high seconds after the submit), from
    # the audio's duration and the model's speed (docs/polling.md); None: today's schedule.
    # It rides in the message so that a poll reads nothing more than before.
    forecast: tuple[float, float, float] | None = None

    def to_message(self) -> dict[str, Any]:
        message = {
            "job_id": self.job_id,
            "generation_id": self.generation_id,
            "deadline": self.deadline,
            "polls": self.polls,
            "chain": self.chain,
            "lease": self.lease,
            # Not "status": that key marks an Outcome's message (parse_message).
            "server_status": self.status,
            "pending_at": self.pending_at,
        }
        if self.forecast is not None:
            message["forecast"] = list(self.forecast)
        return message

    def planned(self) -> Forecast | None:
        """The forecast as ``tasks.polling`` takes it (None if absent or malformed)."""
        if self.forecast is None:
            return None
        try:
            return Forecast(*self.forecast)
        except (TypeError, ValueError):
            return None


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
    """Poll again after ``delay`` seconds, with ``ref`` (its lease and status brought up
    to date). ``deferred``: a shared limit's wait, not a poll."""

    delay: float
    reason: str
    ref: PollRef
    deferred: bool = False


@dataclass(frozen=True, slots=True)
class SubmitLater:
    """Submit again after ``delay`` seconds as chain ``chain``. ``deferred``: a shared
    limit's wait (not an attempt); else a transient failure (an attempt)."""

    delay: float
    chain: int
    reason: str
    deferred: bool


@dataclass(frozen=True, slots=True)
class Stale:
    """Another step chain owns the job, or it ended: this one stops, doing nothing."""

    reason: str


def parse_message(message: dict[str, Any]) -> PollRef | Outcome:
    """The inverse of ``to_message`` for whichever of the two it was."""
    pending_at = message.get("pending_at")  # absent in messages from before the field
    pending_at = None if pending_at is None else float(pending_at)
    if "status" in message:
        return Outcome(
            message["job_id"], JobStatus(message["status"]), message.get("error"), pending_at
        )
    lease = message.get("lease")
    # Fields absent in messages from before they existed: chain 0 is every old row's.
    return PollRef(
        message["job_id"],
        message["generation_id"],
        float(message["deadline"]),
        int(message.get("polls", 0)),
        int(message.get("chain", 0)),
        None if lease is None else float(lease),
        message.get("server_status"),
        pending_at,
        _triple(message.get("forecast")),
    )


def _triple(value: Any) -> tuple[float, float, float] | None:
    """A message's forecast: three numbers, or None (absent, or not what we wrote)."""
    if not isinstance(value, list | tuple) or len(value) != 3:
        return None
    try:
        low, mid, high = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return low, mid, high


def _deadline(record: JobRecord, policy: PollPolicy) -> float:
    started = record.submitted_at or record.enqueued_at
    return started.timestamp() + policy.deadline


def resume_ref(
    record: JobRecord, policy: PollPolicy, *, chain: int | None = None, lease: float | None = None
) -> PollRef | None:
    """The poll reference of a submitted job, rebuilt from its row (None if not submitted),
    for the chain ``chain`` (default: the row's) holding ``lease``."""
    if record.generation_id is None:
        return None
    return PollRef(
        record.id,
        record.generation_id,
        _deadline(record, policy),
        record.polls,
        record.chain if chain is None else chain,
        lease,
        record.server_status,
    )


class UnrecordedSubmit(Exception):
    """The API created the job but the database refused its ``generation_id``.

    The task retries with the id in hand (``known_generation_id``), as the chain that
    claimed the job, so the retry records it instead of creating a second, orphaned job.
    """

    def __init__(self, job_id: str, generation_id: str, chain: int) -> None:
        super().__init__(f"job {job_id}: created as {generation_id[:100]}, not yet recorded")
        self.job_id = job_id
        self.generation_id = generation_id
        self.chain = chain


def submit_job(
    store: Store,
    client: STTClient,
    job_id: str,
    *,
    policy: PollPolicy,
    now: datetime,
    claim_for: float = 35.0,
    submit_deadline: float = 86400.0,
    max_retries: int = SUBMIT_MAX_RETRIES,
    chain: int = 0,
    attempt: int = 0,
    in_flight: InFlightLimiter | None = None,
    deferrals: int = 0,
    known_generation_id: str | None = None,
    probe: Callable[[str], float | None] | None = None,
    speed: Callable[[str], SpeedModel | None] | None = None,
) -> PollRef | Outcome | SubmitLater | Stale:
    """Create the server-side job once, record its id, hand over to polling.

    ``chain`` is the fence the message holds (tasks/lease.py). Before ``POST /create`` the
    submit claims the job (``chain -> chain + 1``, a lease of ``claim_for`` seconds plus
    slack): a second submit of the same job (redelivered, re-driven) fails that claim and
    stops (``Stale``) instead of creating again. A submit finding a ``generation_id``
    already on the row takes over into polling. Every wait (a shared limit's, a retry's
    backoff) is written as the job's due time before the task sleeps on it.
    ``attempt`` counts transient failures so far; ``max_retries`` bounds them.
    ``claim_for``: the create request's longest time (connect + read timeout).
    A database error right after the create raises ``UnrecordedSubmit`` carrying the new
    id; the retry passes it back as ``known_generation_id`` and only records it.

    Duration-aware polling (docs/polling.md): ``speed`` gives the model's learned speed;
    with it and the audio's duration the poll reference carries a forecast and the first
    poll's lease is due near its low quantile. With no duration on the row, ``probe`` (the
    SSRF-guarded range request of ``tasks.probe``; None when ``STT_PROBE_AUDIO=0``) reads
    it off the audio *after* the generation is recorded: the server is already at work,
    and a worker lost during the probe cannot make the job be created twice. Any failure
    is "unknown"; a duration found costs one more UPDATE (it, and the forecast's lease).
    """
    record = store.get(job_id)
    if record is None:
        return Outcome(job_id, JobStatus.FAILED, f"job {job_id} is not in the store")
    if record.done:
        return Outcome(job_id, record.status, record.error)
    if known_generation_id is not None:
        return _record(store, job_id, known_generation_id, chain=chain, now=now, policy=policy)
    if record.generation_id is not None:
        # A submit redelivered after its job was recorded (its worker died before the
        # poll was sent): take over into polling, from the chain the row names.
        lease = poll_lease(now + timedelta(seconds=policy.first_delay))
        owner = record.chain
        if not store.claim(job_id, chain=owner, status=JobStatus.SUBMITTED, due_at=lease):
            return Stale(f"job {job_id} is submitted and owned by another chain")
        ref = resume_ref(record, policy, chain=owner + 1, lease=lease.timestamp())
        assert ref is not None
        return ref
    if record.chain != chain:
        # Fenced out without a write (a re-drive replaced this chain); the CAS writes
        # below catch a re-drive that lands after this read.
        return Stale(f"job {job_id} is owned by chain {record.chain}, not {chain}")
    if now.timestamp() - record.enqueued_at.timestamp() >= submit_deadline:
        return Outcome(
            job_id,
            JobStatus.TIMEOUT,
            f"not submitted within the {submit_deadline:.0f} s submit deadline",
        )
    try:
        if in_flight is not None:
            in_flight.acquire(job_id, deferrals=deferrals)
    except RateLimited as exc:
        wait = exc.retry_after
        return _submit_later(store, job_id, chain, wait, now, str(exc), deferred=True, read=record)
    if not store.claim(
        job_id, chain=chain, status=JobStatus.PENDING, due_at=claim_lease(now, claim_for)
    ):
        return Stale(f"job {job_id} is claimed by another chain")
    owner = chain + 1
    try:
        generation = client.create(
            model=record.model,
            url=record.url,
            language=record.language,
            prompt=record.prompt,
            temperature=record.temperature,
        )
    except RateLimited as exc:  # the shared rate limit: nothing was sent
        return _submit_later(store, job_id, owner, exc.retry_after, now, str(exc), deferred=True)
    except TransientError as exc:
        if attempt >= max_retries:
            store.count_submit_attempt(job_id)
            message = f"submit gave up after {attempt + 1} attempts: {exc}"
            return Outcome(job_id, JobStatus.FAILED, message)
        delay = submit_retry_delay(attempt, retry_after=exc.retry_after)
        return _submit_later(store, job_id, owner, delay, now, str(exc), deferred=False)
    except PermanentError as exc:
        store.count_submit_attempt(job_id)
        # The error already says how it was refused ("rejected: ...", "unauthorized ...").
        return Outcome(job_id, JobStatus.FAILED, f"submit {exc}")
    log.info(
        "job %s submitted as %s (%s, %s)",
        job_id,
        generation.generation_id[:100],
        record.model,
        redact_url(record.url),
    )
    model = None if speed is None else speed(record.model)
    forecast = None if model is None else model.forecast(record.duration)
    recorded = _record(
        store,
        job_id,
        generation.generation_id,
        chain=owner,
        now=now,
        policy=policy,
        forecast=forecast,
    )
    if probe is None or record.duration is not None or not isinstance(recorded, PollRef):
        return recorded
    return _probed(store, recorded, probe(record.url), model, now=now, policy=policy)


def _probed(
    store: Store,
    ref: PollRef,
    duration: float | None,
    model: SpeedModel | None,
    *,
    now: datetime,
    policy: PollPolicy,
) -> PollRef | Stale:
    """Record a probed duration (and the forecast's lease for the first poll), if any."""
    if duration is None:
        return ref
    forecast = None if model is None else model.forecast(duration)
    lease = poll_lease(now + timedelta(seconds=first_poll_delay(policy, forecast)))
    if not store.note_duration(ref.job_id, duration, chain=ref.chain, due_at=lease):
        return Stale(f"job {ref.job_id}: chain {ref.chain} no longer owns it")
    triple = None if forecast is None else (forecast.low, forecast.mid, forecast.high)
    return replace(ref, lease=lease.timestamp(), forecast=triple)


def _submit_later(
    store: Store,
    job_id: str,
    chain: int,
    delay: float,
    now: datetime,
    reason: str,
    *,
    deferred: bool,
    read: JobRecord | None = None,
) -> SubmitLater | Stale:
    """Write when the submit comes back (its due time, as a lease) before sleeping on it.

    ``read``: the row as this step read it, if nothing was written since; a wait its
    lease already covers then writes nothing (a backlog of submits waiting for the
    in-flight cap would otherwise write the row on every turn).
    """
    next_at = now + timedelta(seconds=delay)
    lease = None if read is None or read.due_at is None else read.due_at.timestamp()
    if lease is not None and not needs_renewal(lease, next_at):
        return SubmitLater(delay, chain, reason, deferred)
    if not store.defer(job_id, until=poll_lease(next_at), chain=chain, count_attempt=not deferred):
        return Stale(f"job {job_id} is owned by another chain")
    return SubmitLater(delay, chain, reason, deferred)


def _record(
    store: Store,
    job_id: str,
    generation_id: str,
    *,
    chain: int,
    now: datetime,
    policy: PollPolicy,
    forecast: Forecast | None = None,
) -> PollRef | Outcome | Stale:
    """Record a generation the API created, as chain ``chain``; hand over to polling.

    ``forecast``: when the job likely finishes, which sets the first poll's lease.

    If the claim ran out meanwhile and another chain owns the job, the id is still recorded
    (a job at the API is better known than orphaned) and that chain, finding it, takes over
    into polling. A value the database refuses outright ends the job ``failed``: retrying
    could not record it, and creating again would only make another.
    """
    lease = poll_lease(now + timedelta(seconds=first_poll_delay(policy, forecast)))
    deadline = now.timestamp() + policy.deadline
    try:
        if store.mark_submitted(job_id, generation_id, now=now, chain=chain, due_at=lease):
            return PollRef(
                job_id,
                generation_id,
                deadline,
                chain=chain,
                lease=lease.timestamp(),
                pending_at=now.timestamp(),
                forecast=None if forecast is None else (forecast.low, forecast.mid, forecast.high),
            )
        if store.mark_submitted(job_id, generation_id, now=now, due_at=now):
            return Stale(f"job {job_id}: recorded {generation_id[:100]} for the chain owning it")
    except DataError as exc:
        reason = str(exc.orig or exc).splitlines()[0]
        return Outcome(
            job_id,
            JobStatus.FAILED,
            f"the API created generation {generation_id[:100]!r} but the database cannot "
            f"record it ({reason}); not created again",
        )
    except DBAPIError as exc:
        raise UnrecordedSubmit(job_id, generation_id, chain) from exc
    log.warning(
        "job %s: created again as %s while already submitted (orphaned at the API)",
        job_id,
        generation_id[:100],
    )
    return Stale(f"job {job_id} was already submitted")


def poll_once(
    store: Store,
    client: STTClient,
    ref: PollRef,
    *,
    attempt: int,
    policy: PollPolicy,
    now: datetime,
) -> Reschedule | Outcome | Stale:
    """Ask the server once; say when to ask again, or how the job ended.

    ``attempt`` counts this message's retries; ``ref.polls`` the polls before it (a
    re-driven job), so the count and the backoff carry on where they were. The row is
    written only when the status word changed or the chain's lease would run out before
    the next poll (tasks/lease.py); such a write finding another chain owning the job
    returns ``Stale``.
    """
    attempt += ref.polls
    polls = attempt + 1
    if now.timestamp() >= ref.deadline:
        # Polls write the row only now and then: leave the count true for the timed-out row.
        if not store.record_poll(
            ref.job_id, server_status=ref.status, polls=attempt, due_at=now, chain=ref.chain
        ):
            return Stale(f"job {ref.job_id}: chain {ref.chain} no longer owns it")
        return Outcome(
            ref.job_id,
            JobStatus.TIMEOUT,
            f"no final status within the {policy.deadline:.0f} s deadline "
            f"after {attempt} polls (generation {ref.generation_id})",
        )
    try:
        generation = client.get(ref.generation_id)
    except RateLimited as exc:  # not a poll: wait its turn without touching the schedule
        return _reschedule(store, ref, None, attempt, exc.retry_after, now, str(exc), deferred=True)
    except TransientError as exc:
        delay = _next_delay(ref, now, attempt, policy, exc.retry_after)
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
        delay = _next_delay(ref, now, attempt, policy, None)
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
            pending_at=ref.pending_at,
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


def _next_delay(
    ref: PollRef, now: datetime, attempt: int, policy: PollPolicy, retry_after: float | None
) -> float:
    """Today's schedule, or the forecast's when the message carries one."""
    forecast = ref.planned()
    # The deadline is the submit plus the policy's: the submit's time without a read.
    elapsed = now.timestamp() - (ref.deadline - policy.deadline) if forecast else 0.0
    return planned_poll_delay(
        elapsed, attempt, policy=policy, forecast=forecast, retry_after=retry_after
    )


def _reschedule(
    store: Store,
    ref: PollRef,
    server_status: str | None,
    polls: int,
    delay: float,
    now: datetime,
    reason: str,
    pending_at: float | None = None,
    *,
    deferred: bool = False,
) -> Reschedule | Stale:
    # Never sleep past the deadline: the last poll lands on it and reports the timeout.
    delay = max(0.0, min(delay, ref.deadline - now.timestamp()))
    next_at = now + timedelta(seconds=delay)
    status = ref.status if server_status is None else status_for_row(server_status)
    if pending_at is not None:
        ref = replace(ref, pending_at=pending_at)  # carried on for tasks.metrics' lag
    if status == ref.status and not needs_renewal(ref.lease, next_at):
        return Reschedule(delay, reason, replace(ref), deferred)
    lease = poll_lease(next_at)
    if not store.record_poll(
        ref.job_id, server_status=status, polls=polls, due_at=lease, chain=ref.chain
    ):
        return Stale(f"job {ref.job_id}: chain {ref.chain} no longer owns it")
    return Reschedule(delay, reason, replace(ref, lease=lease.timestamp(), status=status), deferred)


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
            # A job whose duration was neither given nor probed learns it from the answer.
            duration=transcript.usage.audio_seconds if record.duration is None else None,
        )
    except UNSTORABLE as exc:
        error = f"the result could not be stored: {unstorable_reason(exc)}"
        log.warning("job %s: %s", record.id, error)
        return store.finish_and_get(record.id, JobStatus.FAILED, error=error, now=now)
