"""Polls per node: worker CPU per poll and polls/s, beside the bare ``self.retry`` floor.

Run from the repository root (about three minutes; ``--quick`` about one and a half)::

    .venv/bin/python -m bench.poll_cost
    .venv/bin/python -m bench.poll_cost --quick

One private ``redis-server``, one fresh PostgreSQL database, the emulator with jobs that
never finish within the run (``--fixed 3600``), real worker processes (``bench.worker_app``,
threads x16, as production). Each variant runs ``--tasks`` waiting tasks that re-schedule
themselves every ``--countdown`` seconds, so the worker is never idle; after a warm-up, a
``--window`` of seconds is measured: polls from the emulator's GET counter (the floor:
a Redis counter), worker CPU from /proc. Variants, all in the same run:

- floor, events on: a task that only calls ``self.retry(countdown=...)`` (Celery's cost);
- floor, events off: the same with ``send_events=False`` (how ``stt.poll`` runs);
- stt.poll: our poll task (HTTP GET, parse, lease bookkeeping, re-schedule);

each with 1 worker process and with one process per core (``stt-workers worker``'s default).
The emulator and Redis share the machine's cores with the workers, as on a one-node setup.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import (
    Emulator,
    Worker,
    activate,
    command_line,
    cpu_seconds,
    fresh_postgres,
    machine_note,
    markdown_table,
    start_redis,
    text_table,
    update_doc,
    worker_env,
)

GOAL_CPU_MS = 5.0


def measure_window(
    workers: list[Worker], count: Callable[[], int], warmup: float, window: float
) -> dict[str, float]:
    time.sleep(warmup)
    cpu0 = sum(cpu_seconds(w.process.pid) for w in workers)
    n0, t0 = count(), time.monotonic()
    time.sleep(window)
    cpu1 = sum(cpu_seconds(w.process.pid) for w in workers)
    n1, t1 = count(), time.monotonic()
    polls = max(1, n1 - n0)
    return {
        "polls_per_s": polls / (t1 - t0),
        "cpu_ms_per_poll": 1000 * (cpu1 - cpu0) / polls,
        "cpu_cores": (cpu1 - cpu0) / (t1 - t0),
    }


def floor(
    env: dict[str, str], redis_client: Any, args: argparse.Namespace, quiet: bool, procs: int
) -> dict[str, float]:
    from bench.noop import RETRIES_KEY, STOP_KEY, retry_floor, retry_floor_quiet

    task = retry_floor_quiet if quiet else retry_floor
    redis_client.flushdb()
    workers = [Worker(env) for _ in range(procs)]
    try:
        for _ in range(args.tasks):
            task.delay(args.countdown)
        return measure_window(
            workers, lambda: int(redis_client.get(RETRIES_KEY) or 0), args.warmup, args.window
        )
    finally:
        redis_client.set(STOP_KEY, 1)
        for worker in workers:
            worker.stop()


def ours(
    env: dict[str, str], redis_client: Any, emulator: Emulator, args: argparse.Namespace, procs: int
) -> dict[str, float]:
    from tasks.jobs import transcribe

    redis_client.flushdb()
    workers = [Worker(env) for _ in range(procs)]
    try:
        tag = os.urandom(4).hex()
        for i in range(args.tasks):
            transcribe(f"https://bench.example/cost/{tag}/{i}.mp3")
        return measure_window(
            workers,
            lambda: int(emulator.admin("stats")["by_endpoint"].get("get", 0)),
            args.warmup,
            args.window,
        )
    finally:
        for worker in workers:
            worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=400, help="waiting tasks (jobs)")
    parser.add_argument("--countdown", type=float, default=0.2, help="seconds between polls")
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="--window 8 --tasks 200")
    parser.add_argument("--no-doc", action="store_true", help="print only")
    args = parser.parse_args()
    if args.quick:
        args.window, args.tasks, args.warmup = 8.0, 200, 5.0
    cores = len(os.sched_getaffinity(0))
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory() as tmp, fresh_postgres() as database_url:
        redis_server = start_redis(Path(tmp) / "redis")
        emulator = Emulator("--fixed", "3600", "--queue-delay", "0")
        poll_every = str(args.countdown)
        env = worker_env(
            broker_url=redis_server.url,
            database_url=database_url,
            api_base=emulator.base_url,
            STT_POLL_FIRST_DELAY=poll_every,
            STT_POLL_MAX_DELAY=poll_every,
            STT_POLL_FACTOR="1.0",
        )
        activate(env)
        from tasks import migrate

        migrate.upgrade(database_url)
        client = redis_server.client()
        try:
            results: dict[tuple[str, int], dict[str, float]] = {}
            for procs in sorted({1, cores}):
                results["floor, events on", procs] = floor(env, client, args, False, procs)
                results["floor, events off", procs] = floor(env, client, args, True, procs)
                results["stt.poll", procs] = ours(env, client, emulator, args, procs)
        finally:
            emulator.stop()
            redis_server.process.terminate()
            redis_server.process.wait(10)
    for (variant, procs), r in results.items():
        floor_r = results["floor, events on", procs]
        rows.append(
            [
                variant,
                procs,
                f"{r['polls_per_s']:.0f}",
                f"{r['cpu_ms_per_poll']:.2f}",
                f"{r['cpu_cores']:.2f}",
                f"{r['cpu_ms_per_poll'] / floor_r['cpu_ms_per_poll']:.2f}x",
            ]
        )
    headers = [
        "variant",
        "worker processes",
        "polls/s",
        "worker CPU ms/poll",
        "worker cores busy",
        "CPU vs floor (events on)",
    ]
    print(text_table(headers, rows))
    ours1 = results["stt.poll", 1]["cpu_ms_per_poll"]
    verdict = "met" if ours1 <= GOAL_CPU_MS else "NOT met"
    print(f"goal: stt.poll <= {GOAL_CPU_MS} ms of worker CPU per poll: {verdict} ({ours1:.2f} ms)")
    if not args.no_doc:
        body = (
            f"`{command_line()}` ({machine_note()}; {args.tasks} waiting jobs, a poll every "
            f"{args.countdown} s, {args.window:.0f} s measured after {args.warmup:.0f} s):\n\n"
            + markdown_table(headers, rows)
            + f"\n\nGoal <= {GOAL_CPU_MS} ms of worker CPU per poll: **{verdict}** "
            f"({ours1:.2f} ms with one process).\n"
        )
        update_doc("poll-cost", body)


if __name__ == "__main__":
    main()
