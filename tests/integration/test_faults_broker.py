"""Broker lost: a FLUSHALL mid-run, and Redis down for 30 s; the rows re-drive every job.

The database is the source of truth: whatever the broker forgot, ``stt.sweep`` finds from
the rows (a pending job never submitted, a poll overdue, a result landed but not stored)
and enqueues that step again. Here the test sends ``stt.sweep`` every two seconds through
the broker, as a beat with a short schedule would.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.jobs import transcribe
from tasks.models import JobStatus
from tasks.pipeline import sweep
from tasks.store import JobRecord
from tests.fixtures.reliability import api_duplicates
from tests.fixtures.services import start_redis, wait_for
from tests.fixtures.stack import Stack

SWEEP_EVERY = 2.0
# Longer than a healthy job's poll gap (<= 1 s here) plus queueing, so only lost work is
# re-driven (production: 360 s, see tasks.sweep.DEFAULT_GRACE).
GRACE = 5.0


def sweep_until_done(
    stack: Stack, ids: list[str], timeout: float, grace: float = GRACE
) -> list[JobRecord]:
    """Beat's part: send stt.sweep every SWEEP_EVERY seconds until every job is final."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = stack.store.get_many(ids)
        if len(records) == len(ids) and all(r.done for r in records):
            return sorted(records, key=lambda r: ids.index(r.id))
        sweep.delay(grace=grace)
        time.sleep(SWEEP_EVERY)
    stuck = [(r.id, r.status.value) for r in stack.store.get_many(ids) if not r.done]
    raise AssertionError(f"{len(stuck)} jobs never finished: {stuck[:5]}")


def _wait_mid_run(stack: Stack, ids: list[str]) -> dict[str, JobRecord]:
    """Until some jobs are submitted and polling, while others still wait."""
    deadline = time.monotonic() + 60
    while True:
        records = stack.store.get_many(ids)
        if sum(r.polls >= 2 for r in records) >= len(ids) // 4:
            return {r.id: r for r in records}
        assert time.monotonic() < deadline, "the worker did not get going"
        time.sleep(0.05)


def re_driven(stack: Stack) -> dict[str, int]:
    """What the sweeper re-drove, summed from the workers' logs."""
    total = {"submit": 0, "poll": 0, "store": 0, "callback": 0}
    for worker in stack.workers:
        for line in worker.log().splitlines():
            if "sweep re-drove overdue jobs:" in line:
                counts = ast.literal_eval(line.split("overdue jobs:", 1)[1].strip())
                for step, n in counts.items():
                    total[step] += n
    return total


def _check(
    stack: Stack, ids: list[str], urls: list[str], before: dict[str, JobRecord]
) -> tuple[list[JobRecord], int]:
    records = stack.store.get_many(ids)
    records.sort(key=lambda r: ids.index(r.id))
    assert len(stack.store.list_jobs(limit=None)) == len(ids)
    creates = stack.emulator.create_counts()
    for record, url in zip(records, urls, strict=True):
        assert record.status is JobStatus.COMPLETED, (record.status, record.error)
        assert record.text == stack.emulator.expected_transcript(url)
        if before[record.id].generation_id:
            assert creates[url] == 1, f"{url} created again after its id was recorded"
        # A re-driven poll carries the count on (it used to restart at 1).
        assert record.polls >= before[record.id].polls
    return records, api_duplicates(creates, urls)


def test_flushall_mid_run_sweeper_re_drives_what_was_lost(
    stack: Stack, reliability: Callable[..., Any]
) -> None:
    stack.emulator.configure(fixed=4.0)
    urls = [f"https://media.example.org/flushed/{i}.mp3" for i in range(60)]
    ids = [transcribe(url, "aai/slam-1").id for url in urls]
    before = _wait_mid_run(stack, ids)
    stack.redis.client().flushall()
    flushed_at = time.monotonic()

    sweep_until_done(stack, ids, timeout=120)
    recover_s = time.monotonic() - flushed_at
    records, duplicates = _check(stack, ids, urls, before)
    redriven = re_driven(stack)
    assert sum(redriven.values()) > 0, "nothing was lost: the test proved nothing"
    reliability(
        "Redis FLUSHALL mid-run, worker alive (sweeper every 2 s, grace 5 s)",
        jobs_in=len(ids),
        jobs_stored=sum(r.done for r in records),
        api_duplicates=duplicates,
        recover_s=recover_s,
        polling_at_flush=sum(bool(r.polls) for r in before.values()),
        re_driven=redriven,
    )


def test_broker_down_30_s_worker_reconnects_and_all_jobs_finish(
    make_stack: Callable[..., Stack], tmp_path: Path, reliability: Callable[..., Any]
) -> None:
    broker = start_redis(tmp_path / "broker")
    try:
        stack = make_stack(start_worker=False, STT_BROKER_URL=broker.url)
        worker = stack.start_worker()
        stack.emulator.configure(fixed=4.0)
        urls = [f"https://media.example.org/outage/{i}.mp3" for i in range(40)]
        ids = [transcribe(url, "aai/slam-1").id for url in urls]
        before = _wait_mid_run(stack, ids)

        broker.process.terminate()  # no persistence: everything queued is gone
        broker.process.wait(10)
        time.sleep(30)
        assert worker.process is not None
        assert worker.process.poll() is None, f"worker died:\n{worker.log()[-4000:]}"
        # Count before the restart: the worker's reconnect loop can get in within
        # milliseconds of Redis coming up, before start_redis() has even returned.
        mark = worker.log().count("Connected to ")
        broker = start_redis(tmp_path / "broker", port=broker.port)
        back_at = time.monotonic()
        wait_for(
            lambda: worker.log().count("Connected to ") > mark,
            60,
            "the worker to reconnect",
        )
        reconnect_s = time.monotonic() - back_at

        sweep_until_done(stack, ids, timeout=120)
        recover_s = time.monotonic() - back_at
        records, duplicates = _check(stack, ids, urls, before)
        reliability(
            "Redis down 30 s mid-run, restarted empty on the same port",
            jobs_in=len(ids),
            jobs_stored=sum(r.done for r in records),
            api_duplicates=duplicates,
            recover_s=recover_s,
            worker_reconnect_s=round(reconnect_s, 1),
            re_driven=re_driven(stack),
        )
    finally:
        broker.process.terminate()
        broker.process.wait(10)
