"""The fence's numbers (tasks/lease.py) and the sweeper's plan (tasks/sweep.py), pure."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from tasks.lease import LEASE_EXTRA, LEASE_MARGIN, needs_renewal, poll_lease, redrive_after
from tasks.models import JobStatus
from tasks.store import MAX_SERVER_STATUS_CHARS, status_for_row
from tasks.sweep import Candidate, Step, plan_sweep

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def job(status: JobStatus, due_s: float, *, redrives: int = 0, age_s: float = 60.0) -> Candidate:
    return Candidate(
        id=f"{status.value}-{due_s}-{redrives}",
        status=status,
        chain=3,
        redrives=redrives,
        due=T0 + timedelta(seconds=due_s),
        enqueued_at=T0 - timedelta(seconds=age_s),
        submitted_at=None if status is JobStatus.PENDING else T0 - timedelta(seconds=age_s),
        finished_at=None,
    )


def plan(*jobs: Candidate) -> list[tuple[Step, int]]:
    actions = plan_sweep(list(jobs), now=T0, grace=30, submit_deadline=86400, poll_deadline=1800)
    return [(a.step, a.chain) for a in actions]


def test_only_a_step_past_its_due_time_by_more_than_the_grace_is_re_driven() -> None:
    assert plan(job(JobStatus.PENDING, -29)) == []
    assert plan(job(JobStatus.PENDING, -31)) == [(Step.SUBMIT, 3)]
    assert plan(job(JobStatus.SUBMITTED, -31)) == [(Step.POLL, 3)]


def test_a_job_re_driven_before_backs_off() -> None:
    assert plan(job(JobStatus.SUBMITTED, -59, redrives=1)) == []
    assert plan(job(JobStatus.SUBMITTED, -61, redrives=1)) == [(Step.POLL, 3)]
    assert redrive_after(30, 4) == redrive_after(30, 40) == 480


def test_jobs_past_their_deadline_are_expired_not_re_driven() -> None:
    assert plan(job(JobStatus.PENDING, -31, age_s=86400)) == [(Step.EXPIRE, 3)]
    assert plan(job(JobStatus.SUBMITTED, -31, age_s=1800)) == [(Step.EXPIRE, 3)]


@given(st.floats(0, 300), st.floats(-100, 400))
def test_a_renewed_lease_always_covers_the_next_run(delay: float, lease_offset: float) -> None:
    next_at = T0 + timedelta(seconds=delay)
    lease = T0.timestamp() + lease_offset
    if needs_renewal(lease, next_at):
        lease = poll_lease(next_at).timestamp()
    assert lease >= next_at.timestamp() + LEASE_MARGIN
    assert poll_lease(next_at) - next_at == timedelta(seconds=LEASE_EXTRA)


@given(st.text())
def test_the_stored_status_word_is_short_and_free_of_control_characters(word: str) -> None:
    kept = status_for_row(word)
    assert kept is not None and len(kept) <= MAX_SERVER_STATUS_CHARS
    assert not any(unicodedata.category(c).startswith("C") for c in kept)
