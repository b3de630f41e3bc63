"""Re-drive jobs whose broker message was lost, from the rows alone.

The broker may lose messages (a Redis FLUSHALL, a restart without persistence, a
``kill -9`` between kombu's pop and its unacked write); the database does not. Every step
records when it is next due (``due_at``, tasks/lease.py), so a job is *overdue* exactly
when its own step did not come back: ``due_at`` more than the grace in the past. The
grace only covers queueing and clock skew, not the length of any wait.

The sweeper re-drives an overdue job by a compare-and-set on its ``chain`` (the fence):
``chain -> chain + 1``, so if the old chain was only late, not lost, its next write finds
another chain owning the job and it stops. A job re-driven before waits longer
(``lease.redrive_after``). A job past its deadline is not re-driven but ended as
``timeout`` with the reason: pending ones after ``STT_SUBMIT_DEADLINE``, submitted ones
after the poll deadline.

``plan_sweep`` decides from the rows (pure); ``find_candidates`` reads them; the task in
``tasks.pipeline`` carries the plan out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import and_, func, or_, select

from tasks.callbacks import CallbackStatus
from tasks.lease import redrive_after
from tasks.models import FINAL_JOB_STATUSES, JobStatus
from tasks.schema import JobRow
from tasks.store import Store

__all__ = [
    "CALLBACK_GRACE",
    "Action",
    "Candidate",
    "Step",
    "find_candidates",
    "find_lost_callbacks",
    "plan_sweep",
]

# Callbacks have no fence: a re-driven delivery that was only queued late is a second
# POST. Their grace stays longer than the longest healthy wait (CALLBACK_MAX_DELAY, 300 s)
# plus queueing, measured from callback_next_at.
CALLBACK_GRACE = 360.0


class Step(StrEnum):
    """What the sweeper enqueues for a job."""

    SUBMIT = "submit"
    POLL = "poll"
    STORE = "store"
    EXPIRE = "expire"  # past its deadline: stored as timeout with the reason


@dataclass(frozen=True, slots=True)
class Candidate:
    """The columns of a non-final job whose due time passed at least one grace ago."""

    id: str
    status: JobStatus
    chain: int
    redrives: int
    due: datetime  # due_at, or for rows from before it existed the step's start
    enqueued_at: datetime
    submitted_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class Action:
    """Re-drive ``job_id`` (owned by ``chain``) with ``step``; ``reason`` for an expiry."""

    step: Step
    job_id: str
    chain: int
    reason: str | None = None


def plan_sweep(
    candidates: list[Candidate],
    *,
    now: datetime,
    grace: float,
    submit_deadline: float,
    poll_deadline: float,
) -> list[Action]:
    """The steps to re-drive, from rows alone; no I/O."""
    actions = []
    for job in candidates:
        if job.due > now - timedelta(seconds=redrive_after(grace, job.redrives)):
            continue  # not overdue yet, or backing off after earlier re-drives
        if job.status is JobStatus.PENDING:
            if (now - job.enqueued_at).total_seconds() >= submit_deadline:
                reason = f"not submitted within the {submit_deadline:.0f} s submit deadline"
                actions.append(Action(Step.EXPIRE, job.id, job.chain, reason))
            else:
                actions.append(Action(Step.SUBMIT, job.id, job.chain))
        elif job.finished_at is not None:
            actions.append(Action(Step.STORE, job.id, job.chain))
        else:
            started = job.submitted_at or job.enqueued_at
            if (now - started).total_seconds() >= poll_deadline:
                reason = (
                    f"no final status within the {poll_deadline:.0f} s deadline "
                    "(its poll was lost and re-driven too late)"
                )
                actions.append(Action(Step.EXPIRE, job.id, job.chain, reason))
            else:
                actions.append(Action(Step.POLL, job.id, job.chain))
    return actions


def find_candidates(store: Store, *, now: datetime, grace: float) -> list[Candidate]:
    """Non-final jobs whose step was due more than ``grace`` seconds ago."""
    cutoff = now - timedelta(seconds=grace)
    due = func.coalesce(JobRow.due_at, JobRow.finished_at, JobRow.submitted_at, JobRow.enqueued_at)
    query = select(
        JobRow.id,
        JobRow.status,
        JobRow.chain,
        JobRow.redrives,
        JobRow.due_at,
        JobRow.enqueued_at,
        JobRow.submitted_at,
        JobRow.finished_at,
    ).where(
        JobRow.status.in_([JobStatus.PENDING.value, JobStatus.SUBMITTED.value]),
        or_(JobRow.due_at < cutoff, and_(JobRow.due_at.is_(None), due < cutoff)),
    )
    with store.session() as session:
        rows = session.execute(query).all()
    return [
        Candidate(
            id=row.id,
            status=JobStatus(row.status),
            chain=row.chain,
            redrives=row.redrives,
            due=row.due_at or row.finished_at or row.submitted_at or row.enqueued_at,
            enqueued_at=row.enqueued_at,
            submitted_at=row.submitted_at,
            finished_at=row.finished_at,
        )
        for row in rows
    ]


def find_lost_callbacks(store: Store, *, now: datetime, grace: float = CALLBACK_GRACE) -> list[str]:
    """Stored jobs whose callback was never enqueued (the message carrying stt.store's
    enqueue was lost) or whose next delivery attempt is long overdue."""
    cutoff = now - timedelta(seconds=grace)
    with store.session() as session:
        return list(
            session.scalars(
                select(JobRow.id).where(
                    JobRow.status.in_([s.value for s in FINAL_JOB_STATUSES]),
                    JobRow.callback_url.is_not(None),
                    or_(
                        and_(JobRow.callback_status.is_(None), JobRow.stored_at < cutoff),
                        and_(
                            JobRow.callback_status == CallbackStatus.PENDING.value,
                            or_(
                                JobRow.callback_next_at < cutoff,
                                and_(
                                    JobRow.callback_next_at.is_(None),
                                    JobRow.stored_at < cutoff,
                                ),
                            ),
                        ),
                    ),
                )
            ).all()
        )
