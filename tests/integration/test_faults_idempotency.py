"""``transcribe(..., idempotency_key=...)``: the same key is the same job, one API job."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tasks.jobs import transcribe
from tasks.models import JobStatus
from tests.fixtures.stack import Stack
from tests.integration.test_pipeline import wait_all


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_same_key_twice_and_concurrently_is_one_job_and_one_api_job(
    make_stack: Callable[..., Stack],
    request: pytest.FixtureRequest,
    db: str,
    reliability: Callable[..., Any],
) -> None:
    label = db
    if db == "postgres":
        from tests.fixtures.services import _truncate

        url = str(request.getfixturevalue("postgres_url"))
        _truncate(url)
        db = url
    stack = make_stack(db=db)
    audio = "https://media.example.org/idempotent/twice.mp3"
    first = transcribe(audio, "aai/slam-1", idempotency_key="order-42")
    second = transcribe(audio, "aai/slam-1", idempotency_key="order-42")
    assert first.id == second.id

    racing = "https://media.example.org/idempotent/racing.mp3"
    with ThreadPoolExecutor(8) as pool:
        handles = list(
            pool.map(lambda _: transcribe(racing, "aai/slam-1", idempotency_key="race-7"), range(8))
        )
    assert len({h.id for h in handles}) == 1

    other = transcribe(audio, "aai/slam-1", idempotency_key="order-43")  # a new key: a new job
    records = wait_all(stack, [first.id, handles[0].id, other.id], timeout=60)
    assert all(r.status is JobStatus.COMPLETED for r in records)
    assert len(stack.store.list_jobs(limit=None)) == 3
    creates = stack.emulator.create_counts()
    assert creates[racing] == 1
    assert creates[audio] == 2  # order-42 once, order-43 once
    reliability(
        f"idempotency key reused (2 sequential + 8 concurrent calls, {label})",
        jobs_in=11,
        jobs_stored=3,
        api_duplicates=0,
        recover_s=None,
    )
