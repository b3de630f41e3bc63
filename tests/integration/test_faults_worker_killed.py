"""Worker killed: ``kill -9`` mid-run; a new worker finishes every job, none created twice.

The killed worker held messages it had reserved (submits, polls waiting on their
countdown) unacked: with ``acks_late`` Redis keeps them in its ``unacked`` set and gives
them back after the visibility timeout (here 15 s, through ``STT_VISIBILITY_TIMEOUT``).
That is not airtight: kombu pops a message (BRPOP) *before* it writes it to ``unacked``,
so a kill between the two loses it. The sweeper, with a grace longer than the visibility
timeout, re-drives exactly those; the test counts them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tasks.jobs import transcribe
from tasks.models import JobStatus
from tests.fixtures.reliability import api_duplicates, re_driven, sweep_until_done
from tests.fixtures.stack import Stack

JOBS = 200
VISIBILITY_TIMEOUT = 15
# Past redelivery (timeout + a 2 s scan + queueing): the sweeper only takes what was lost.
SWEEP_GRACE = 40.0


def test_kill_9_mid_run_every_job_stored_once_and_none_recreated(
    make_stack: Callable[..., Stack], reliability: Callable[..., Any]
) -> None:
    stack = make_stack(STT_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT))
    stack.emulator.configure(fixed=4.0)  # every job is mid-poll when the worker dies
    urls = [f"https://media.example.org/killed/{i}.mp3" for i in range(JOBS)]
    ids = [transcribe(url, "aai/slam-1").id for url in urls]

    deadline = time.monotonic() + 60
    while True:
        records = stack.store.get_many(ids)
        submitted = [r for r in records if r.generation_id]
        if len(submitted) >= JOBS // 2 and any(r.polls for r in submitted):
            break
        assert time.monotonic() < deadline, "the worker did not get going"
        time.sleep(0.05)
    stack.workers[0].kill()
    killed_at = time.monotonic()
    before = {r.id: r for r in stack.store.get_many(ids)}
    assert not all(r.done for r in before.values()), "killed too late to prove anything"

    stack.start_worker()
    records = sweep_until_done(stack, ids, timeout=180, grace=SWEEP_GRACE)
    recover_s = time.monotonic() - killed_at

    assert len(stack.store.list_jobs(limit=None)) == JOBS
    for record, url in zip(records, urls, strict=True):
        assert record.status is JobStatus.COMPLETED, (record.status, record.error)
        assert record.text == stack.emulator.expected_transcript(url)
    creates = stack.emulator.create_counts()
    recorded = {job_id for job_id, r in before.items() if r.generation_id}
    for record, url in zip(records, urls, strict=True):
        if record.id in recorded:
            assert creates[url] == 1, f"{url} was created again after its id was recorded"
            assert record.generation_id == before[record.id].generation_id
        # A poll count only grows, across the kill too.
        assert record.polls >= before[record.id].polls
    duplicates = api_duplicates(creates, urls)
    redriven = re_driven(stack)
    # Only a create in flight at the kill (answered, id not yet written; one per worker
    # thread) can be repeated, or a lost submit the sweeper raced with its redelivery.
    assert duplicates <= 8 + redriven["submit"], creates
    reliability(
        "worker kill -9 mid-run (visibility timeout 15 s, sweeper grace 40 s)",
        jobs_in=JOBS,
        jobs_stored=sum(r.done for r in records),
        api_duplicates=duplicates,
        recover_s=recover_s,
        submitted_at_kill=len(recorded),
        done_at_kill=sum(r.done for r in before.values()),
        re_driven=redriven,
    )
