"""``submit --from-file`` with 100,000 lines waits on its jobs in chunks (issue 12, case 13).

The CLI enqueued every line, then crashed reading them back: one ``IN`` of 100,000 ids
passes PostgreSQL's 65,535 bind parameters. Enqueueing 100,000 jobs one by one would take
the test many minutes, so the rows are inserted in bulk (finished, as if a fast worker had
run them) and the test runs what the CLI runs after enqueueing: its wait loop.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import insert

from tasks.models import JobStatus
from tasks.schema import JobRow
from tasks.store import utcnow
from tests.fixtures.stack import Stack
from workers import render

JOBS = 100_000


@pytest.mark.slow
def test_waiting_on_100000_jobs_reads_them_all(make_stack: Callable[..., Stack], db: str) -> None:
    stack = make_stack(db=db, start_worker=False)
    now = utcnow()
    ids = [uuid.uuid4().hex for _ in range(JOBS)]
    rows = [
        {
            "id": job_id,
            "status": JobStatus.COMPLETED.value,
            "model": "aai/slam-1",
            "url": f"https://media.example.org/bulk/{i}.mp3",
            "metadata": {},
            "text": f"line {i}",
            "polls": 1,
            "submit_attempts": 1,
            "enqueued_at": now,
            "stored_at": now,
        }
        for i, job_id in enumerate(ids)
    ]
    with stack.store.engine.begin() as conn:
        conn.execute(insert(JobRow.__table__), rows)

    records = render.wait_with_progress(ids, timeout=120)
    assert [r.id for r in records] == ids
    assert records[-1].text == f"line {JOBS - 1}"
