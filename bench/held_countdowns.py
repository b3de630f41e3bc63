"""Benchmark 6: a Redis worker's memory per held countdown, and the cap that bounds it.

Run from the repository root::

    .venv/bin/python -m bench.held_countdowns            # up to 36,000 held (~15 min)
    .venv/bin/python -m bench.held_countdowns --quick    # up to 10,000 held (~2 min)

Redis keeps no delayed messages: a worker fetches a poll with a countdown at once and
holds it, unacked, in memory until due (Celery's ETA mechanism). One private
``redis-server`` and one worker (threads x16, the production configuration from
``tasks.celeryconfig``). Phase 1, no cap (``STT_ETA_TASK_LIMIT=0``): poll messages exactly
as the pipeline and the sweeper send them (``poll -> store`` chains, countdown one hour)
are published in steps; after each, once the worker holds them all, its RSS is read from
/proc. The slope over the steps past warm-up is the memory per held countdown, and the
point where the worker passes 500 MB follows. Phase 2, the default cap: a fresh worker is
sent more polls than the cap; it holds the cap and the rest wait in Redis.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from bench._common import (
    Worker,
    activate,
    command_line,
    machine_note,
    markdown_table,
    start_redis,
    text_table,
    update_doc,
    wait_for,
    worker_env,
)
from tasks.settings import DEFAULT_ETA_TASK_LIMIT

MEMORY_GOAL_MB = 500.0
COUNTDOWN = 3600.0
PUBLISH_THREADS = 8


def publish_polls(count: int) -> None:
    """``count`` poll chains with a one-hour countdown, as tasks.pipeline sends them."""
    from concurrent.futures import ThreadPoolExecutor

    from celery import chain

    from tasks.pipeline import poll, store
    from tasks.steps import PollRef

    def send(_: int) -> None:
        ref = PollRef(str(uuid.uuid4()), str(uuid.uuid4()), time.time() + 1800.0, polls=1)
        chain(poll.s(ref.to_message()), store.s()).apply_async(countdown=COUNTDOWN)

    with ThreadPoolExecutor(PUBLISH_THREADS) as pool:
        list(pool.map(send, range(count)))


def slope_kb(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares fit of RSS (MB) on held count: (KB per held, intercept MB)."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    per_held_mb = sxy / sxx
    return per_held_mb * 1024, mean_y - per_held_mb * mean_x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="up to 10,000 held")
    args = parser.parse_args()
    steps = [2_500, 5_000, 7_500, 10_000] if args.quick else [5_000, 10_000, 20_000, 30_000, 36_000]
    capped = 12_000 if args.quick else DEFAULT_ETA_TASK_LIMIT + 10_000
    limit = 10_000 if args.quick else DEFAULT_ETA_TASK_LIMIT
    note = machine_note()
    workdir = Path(tempfile.mkdtemp(prefix="bench-held-"))
    redis = start_redis(workdir / "redis")
    client = redis.client()
    rows: list[list[object]] = []
    try:
        env = worker_env(
            broker_url=redis.url,
            database_url=f"sqlite:///{workdir / 'jobs.sqlite3'}",
            api_base="http://127.0.0.1:9",  # never called: nothing comes due
            STT_ETA_TASK_LIMIT="0",
            # Past it Redis hands held messages out again (the worker would hold duplicates):
            # keep it above the whole run, as production keeps it above every countdown.
            STT_VISIBILITY_TIMEOUT=str(2 * COUNTDOWN),
        )
        activate(env)
        worker = Worker(env, log_path=workdir / "worker-uncapped.log")
        base = worker.rss_mb()
        rows.append([0, f"{base:.0f}", "-", f"{client.info('memory')['used_memory'] / 2**20:.1f}"])
        points: list[tuple[int, float]] = []
        held = 0
        try:
            for target in steps:
                publish_polls(target - held)
                held = target
                wait_for(lambda n=held: client.hlen("unacked") == n, 600, f"{held} held", 0.5)
                time.sleep(3)  # let the worker settle after the burst
                rss = worker.rss_mb()
                points.append((held, rss))
                per = (rss - base) * 1024 / held
                used = client.info("memory")["used_memory"] / 2**20
                rows.append([f"{held:,}", f"{rss:.0f}", f"{per:.1f}", f"{used:.1f}"])
                print(text_table(["held", "worker RSS MB", "KB/held", "Redis MB"], rows))
        finally:
            worker.stop()
        fit = points[1:] if len(points) > 2 else points  # the first step carries warm-up
        kb, intercept = slope_kb(fit)
        crossing = (MEMORY_GOAL_MB - intercept) * 1024 / kb
        first_over = next((h for h, r in points if r > MEMORY_GOAL_MB), None)

        client.flushall()
        capped_env = {**env, "STT_ETA_TASK_LIMIT": str(limit)}
        activate(capped_env)
        worker = Worker(capped_env, log_path=workdir / "worker-capped.log")
        try:
            publish_polls(capped)
            wait_for(lambda: client.hlen("unacked") == limit, 600, f"{limit} held", 0.5)
            time.sleep(5)  # the cap holds: nothing more is fetched
            cap_held, cap_waiting = client.hlen("unacked"), client.llen("stt")
            cap_rss = worker.rss_mb()
        finally:
            worker.stop()
    finally:
        redis.process.terminate()
        redis.process.wait(10)

    headers = ["held countdowns", "worker RSS (MB)", "KB per held (from 0)", "Redis used (MB)"]
    summary = [
        ["slope (KB per held countdown, fit over steps past the first)", f"{kb:.1f}"],
        ["held at which the worker passes 500 MB (fit)", f"{crossing:,.0f}"],
        ["first measured step over 500 MB", f"{first_over:,}" if first_over else "none"],
        [
            f"cap {limit:,}, {capped:,} sent: held / waiting in Redis",
            f"{cap_held:,} / {cap_waiting:,}",
        ],
        [f"cap {limit:,}: worker RSS (MB)", f"{cap_rss:.0f}"],
    ]
    print(text_table(headers, rows))
    print(text_table(["", "value"], summary))
    body = "\n\n".join(
        [
            f"`{command_line()}` ({note}); worker threads x16, Redis broker, countdown 1 h.",
            markdown_table(headers, rows),
            markdown_table(["", "value"], summary),
        ]
    )
    update_doc("held-quick" if args.quick else "held", body)


if __name__ == "__main__":
    main()
