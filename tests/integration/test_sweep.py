"""Broker lost: the rows alone re-drive every job (issue 6's sweeper, first cut)."""

from __future__ import annotations

import time

from tasks.jobs import transcribe
from tasks.models import JobStatus
from tests.fixtures.reliability import sweep_until_done
from tests.fixtures.stack import Stack


def test_sweep_finishes_jobs_after_worker_killed_and_broker_flushed(stack: Stack) -> None:
    stack.emulator.configure(fixed=3.0)
    urls = [f"https://media.example.org/lost/{i}.mp3" for i in range(10)]
    ids = [transcribe(url, "aai/slam-1").id for url in urls]
    deadline = time.monotonic() + 30
    while not all(r.generation_id for r in stack.store.get_many(ids)):
        assert time.monotonic() < deadline, "jobs were not submitted"
        time.sleep(0.1)
    # Lose everything the broker and the worker held: kill -9, then FLUSHALL.
    stack.workers[0].kill()
    stack.redis.client().flushall()
    stack.start_worker()
    time.sleep(4)  # long enough for every server job to finish
    assert not any(r.done for r in stack.store.get_many(ids)), "nothing should drive them"

    # Through the broker, as beat would send it. Each poll's lease (due_at) runs past its
    # next countdown by LEASE_EXTRA; only then is the job overdue and re-driven.
    records = sweep_until_done(stack, ids, timeout=90, grace=0)
    assert all(r.status is JobStatus.COMPLETED for r in records)
    creates = stack.emulator.create_counts()
    assert all(creates[url] == 1 for url in urls)  # re-driven by polling, not re-created
    assert all(r.redrives >= 1 for r in records), [r.redrives for r in records]
