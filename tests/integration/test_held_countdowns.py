"""Redis, the default broker, keeps no delayed messages: the worker holds them (ETA).

So a Redis worker says so once at start, and ``STT_ETA_TASK_LIMIT`` (Celery's
``worker_eta_task_limit``) caps how many it holds, about 12 KB each (docs/benchmarks.md):
past the cap the worker fetches nothing at all (new submits included) until a held poll
comes due; the rest stays in Redis, where this worker takes it as it frees room, or
another worker at once. Every job still completes, later.
"""

from __future__ import annotations

from collections.abc import Callable

from tasks.jobs import TranscriptionHandle, transcribe
from tasks.models import JobStatus
from tests.fixtures.services import wait_for
from tests.fixtures.stack import Stack

NOTICE = "this worker holds waiting polls in its own memory until due"
LIMIT = 10
JOBS = 30
FIRST_DELAY = 20.0


def test_a_redis_worker_says_once_at_start_that_it_holds_waiting_polls(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack()
    log = stack.workers[0].log()
    assert log.count(NOTICE) == 1
    assert "at most 20000; worker_eta_task_limit" in log


def test_past_the_eta_limit_polls_wait_in_redis_for_this_or_another_worker(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(
        STT_ETA_TASK_LIMIT=str(LIMIT),
        STT_POLL_FIRST_DELAY=str(FIRST_DELAY),
        STT_POLL_MAX_DELAY=str(FIRST_DELAY),
        start_worker=False,
    )
    stack.start_worker("--concurrency", "2", "--pool", "threads", "-n", "first@%h")
    assert f"at most {LIMIT}; worker_eta_task_limit" in stack.workers[0].log()
    ids = [transcribe(f"https://media.example.org/held/{i}.mp3").id for i in range(JOBS)]
    redis = stack.redis.client()

    def held_and_waiting(held: int) -> bool:
        # One message per job (its submit, or its poll once submitted): the worker holds
        # (unacked) no more than its limit, everything else waits in Redis's list.
        return redis.hlen("unacked") == held and redis.llen("stt") == JOBS - held

    wait_for(lambda: held_and_waiting(LIMIT), 60, "the worker to hold its limit")
    assert all(r.polls == 0 for r in stack.store.get_many(ids))  # all wait their 20 s out

    stack.start_worker("--concurrency", "2", "--pool", "threads", "-n", "second@%h")
    wait_for(lambda: held_and_waiting(2 * LIMIT), 60, "the second worker to take its share")

    records = [TranscriptionHandle(i).wait(timeout=4 * FIRST_DELAY + 30) for i in ids]
    assert [r.status for r in records] == [JobStatus.COMPLETED] * JOBS
    assert stack.emulator.create_counts() == {
        f"https://media.example.org/held/{i}.mp3": 1 for i in range(JOBS)
    }
