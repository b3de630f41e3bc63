"""Re-drive jobs whose broker message was lost, from the rows alone.

The broker may lose messages (a Redis FLUSHALL, a restart without persistence); the
database does not. A job whose next step is overdue by more than ``grace`` seconds gets
that step enqueued again. Every step is idempotent, so a message that was merely late,
not lost, costs one extra poll and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select

from tasks.callbacks import CallbackStatus
from tasks.models import FINAL_JOB_STATUSES, JobStatus
from tasks.schema import JobRow
from tasks.store import Store

__all__ = ["DEFAULT_GRACE", "Overdue", "find_overdue"]

# Longer than any poll countdown (15 s cap, 300 s Retry-After cap) plus queueing lag, so a
# healthy job is not re-driven; short enough that a lost job restarts within minutes.
DEFAULT_GRACE = 360.0


@dataclass(frozen=True, slots=True)
class Overdue:
    """Job ids grouped by the step they need again."""

    submit: list[str]
    poll: list[str]
    store: list[str]
    callback: list[str]


def find_overdue(store: Store, *, now: datetime, grace: float = DEFAULT_GRACE) -> Overdue:
    cutoff = now - timedelta(seconds=grace)
    pending, submitted = JobStatus.PENDING.value, JobStatus.SUBMITTED.value
    with store.session() as session:
        never_submitted = session.scalars(
            select(JobRow.id).where(
                JobRow.status == pending,
                JobRow.enqueued_at < cutoff,
                # A submit deferred by a shared limit (Store.defer) is due later.
                or_(JobRow.next_poll_at.is_(None), JobRow.next_poll_at < cutoff),
            )
        ).all()
        poll_overdue = session.scalars(
            select(JobRow.id).where(
                JobRow.status == submitted,
                JobRow.finished_at.is_(None),
                or_(
                    JobRow.next_poll_at < cutoff,
                    and_(JobRow.next_poll_at.is_(None), JobRow.submitted_at < cutoff),
                ),
            )
        ).all()
        store_overdue = session.scalars(
            select(JobRow.id).where(JobRow.status == submitted, JobRow.finished_at < cutoff)
        ).all()
        # Stored jobs whose callback was never enqueued (the message carrying stt.store's
        # enqueue was lost) or whose next delivery attempt is long overdue. Retry waits are
        # capped below the grace (tasks.polling.CALLBACK_MAX_DELAY), so a healthy callback
        # is never re-driven.
        callback_overdue = session.scalars(
            select(JobRow.id).where(
                JobRow.status.in_([s.value for s in FINAL_JOB_STATUSES]),
                JobRow.callback_url.is_not(None),
                or_(
                    and_(JobRow.callback_status.is_(None), JobRow.stored_at < cutoff),
                    and_(
                        JobRow.callback_status == CallbackStatus.PENDING.value,
                        or_(
                            JobRow.callback_next_at < cutoff,
                            and_(JobRow.callback_next_at.is_(None), JobRow.stored_at < cutoff),
                        ),
                    ),
                ),
            )
        ).all()
    return Overdue(
        list(never_submitted), list(poll_overdue), list(store_overdue), list(callback_overdue)
    )
