"""Jobs waiting for a shared limit, as the database sees them (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tasks.inflight import in_flight_job_ids
from tasks.store import Store
from tasks.sweep import find_overdue
from tasks.validation import validate_request

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


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
    store.defer(waiting, until=now + timedelta(seconds=15))
    assert find_overdue(store, now=now).submit == [lost]
    later = now + timedelta(minutes=10)  # the deferred submit never came back
    assert sorted(find_overdue(store, now=later).submit) == sorted([waiting, lost])


def test_in_flight_rows_are_submitted_and_not_yet_finished(store: Store) -> None:
    pending, running, landed = (_job(store, n) for n in ("pending", "running", "landed"))
    store.mark_submitted(running, "gen-running", now=T0)
    store.mark_submitted(landed, "gen-landed", now=T0)
    store.land_result(
        landed, server_status="completed", raw_result={}, error=None, polls=2, finished_at=T0
    )
    assert in_flight_job_ids(store) == [running]
    assert pending not in in_flight_job_ids(store)
