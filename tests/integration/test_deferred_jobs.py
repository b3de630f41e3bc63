"""Jobs waiting for a shared limit, as the database sees them (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tasks.inflight import in_flight_job_ids
from tasks.models import JobStatus
from tasks.store import Store
from tasks.sweep import Step, find_candidates, plan_sweep
from tasks.validation import validate_request

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
GRACE = 30.0


def overdue_submits(store: Store, now: datetime) -> list[str]:
    """The jobs the sweeper would submit again at ``now`` (default deadlines)."""
    plan = plan_sweep(
        find_candidates(store, now=now, grace=GRACE),
        now=now,
        grace=GRACE,
        submit_deadline=86400,
        poll_deadline=1800,
    )
    return sorted(a.job_id for a in plan if a.step is Step.SUBMIT)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    yield s
    s.close()


def _job(store: Store, name: str) -> str:
    request = validate_request(f"https://audio.example/{name}.mp3", "aai/slam-1")
    record, _ = store.create_job(request, now=T0)
    return record.id


def test_a_submit_deferred_by_the_cap_is_not_swept_until_it_is_overdue(store: Store) -> None:
    waiting, lost = _job(store, "waiting"), _job(store, "lost")
    now = T0 + timedelta(minutes=30)  # both enqueued long ago
    # Waiting its turn for 6 minutes (two Retry-After: 180): due then, not overdue now.
    store.defer(waiting, until=now + timedelta(seconds=360), chain=0)
    assert overdue_submits(store, now) == [lost]
    assert overdue_submits(store, now + timedelta(seconds=360 + GRACE - 1)) == [lost]
    later = now + timedelta(seconds=360 + GRACE + 1)  # the deferred submit never came back
    assert overdue_submits(store, later) == sorted([waiting, lost])


def test_a_re_driven_job_fences_out_its_old_chain_and_backs_off(store: Store) -> None:
    job = _job(store, "fenced")
    now = T0 + timedelta(minutes=5)
    assert store.redrive(job, chain=0, due_at=now)
    # The original chain (0) wakes up late: its claim and its writes all fail.
    assert not store.claim(job, chain=0, status=JobStatus.PENDING, due_at=now)
    assert not store.defer(job, until=now, chain=0)
    assert store.get(job).chain == 1 and store.get(job).redrives == 1  # type: ignore[union-attr]
    # Re-driven once: overdue after twice the grace, not after one.
    assert overdue_submits(store, now + timedelta(seconds=GRACE * 1.5)) == []
    assert overdue_submits(store, now + timedelta(seconds=GRACE * 2 + 1)) == [job]


def test_a_job_past_the_submit_deadline_is_expired_not_re_driven(store: Store) -> None:
    job = _job(store, "too-late")
    now = T0 + timedelta(days=1, seconds=1)
    plan = plan_sweep(
        find_candidates(store, now=now, grace=GRACE),
        now=now,
        grace=GRACE,
        submit_deadline=86400,
        poll_deadline=1800,
    )
    assert [(a.step, a.job_id) for a in plan] == [(Step.EXPIRE, job)]
    assert "submit deadline" in (plan[0].reason or "")


def test_in_flight_rows_are_submitted_and_not_yet_finished(store: Store) -> None:
    pending, running, landed = (_job(store, n) for n in ("pending", "running", "landed"))
    store.mark_submitted(running, "gen-running", now=T0)
    store.mark_submitted(landed, "gen-landed", now=T0)
    store.land_result(
        landed, server_status="completed", raw_result={}, error=None, polls=2, finished_at=T0
    )
    assert in_flight_job_ids(store) == [running]
    assert pending not in in_flight_job_ids(store)
