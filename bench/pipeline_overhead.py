"""Benchmark 1: end-to-end jobs/s of our submit -> poll -> store chain vs a bare Celery chain.

Run from the repository root (about four minutes with ``--db both``; ``--quick`` about one)::

    .venv/bin/python -m bench.pipeline_overhead                 # 2,000 jobs, PostgreSQL
    .venv/bin/python -m bench.pipeline_overhead --db sqlite     # the same on SQLite
    .venv/bin/python -m bench.pipeline_overhead --quick         # 500 jobs
    .venv/bin/python -m bench.pipeline_overhead --profile       # + cProfile of a solo worker
    .venv/bin/python -m pstats bench-profile.prof          # then: sort cumtime, stats 40

One private ``redis-server``, one emulator answering at once (``--fixed 0 --queue-delay 0``:
the first poll finds the job completed, so every job is exactly submit -> 1 poll -> store),
one worker process (``bench.worker_app``: production config + the no-op tasks). In the same
run and on the same worker: ``--jobs`` bare chains ``noop -> noop -> noop_done`` (the
baseline), then ``--jobs`` calls of ``transcribe()``, then the baseline again; the ratio is
our jobs/s over the mean of the two baselines. The clock runs from the first enqueue until
the last job is observable (our rows all ``completed`` / the no-op counter at ``--jobs``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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

GOAL = 0.5


def enqueue_all(enqueue: Callable[[int], object], jobs: int, threads: int) -> None:
    """Enqueue from ``threads`` threads, as a web app's concurrent requests would."""
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(enqueue, range(jobs)):
            pass


def run_baseline(app: Any, redis_client: Any, jobs: int, threads: int) -> dict[str, float]:
    from celery import chain

    from bench.noop import DONE_KEY, noop, noop_done

    def enqueue(i: int) -> None:
        chain(noop.s({"job_id": str(i)}), noop.s(), noop_done.s()).apply_async()

    redis_client.delete(DONE_KEY)
    started = time.perf_counter()
    enqueue_all(enqueue, jobs, threads)
    enqueued = time.perf_counter() - started
    while int(redis_client.get(DONE_KEY) or 0) < jobs:
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "enqueue_seconds": enqueued, "jobs_per_s": jobs / elapsed}


def run_pipeline(jobs: int, tag: str, threads: int) -> dict[str, float]:
    from tasks import runtime
    from tasks.jobs import transcribe

    store = runtime.get_store()
    before = store.count_by_status().get("completed", 0)
    started = time.perf_counter()

    def enqueue(i: int) -> None:
        transcribe(f"https://bench.example/{tag}/{i}/force-duration-5.mp3")

    enqueue_all(enqueue, jobs, threads)
    enqueued = time.perf_counter() - started
    while True:
        counts = store.count_by_status()
        if counts.get("completed", 0) - before >= jobs:
            break
        if any(counts.get(s) for s in ("failed", "error", "timeout")):
            raise RuntimeError(f"jobs did not complete: {counts}")
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "enqueue_seconds": enqueued, "jobs_per_s": jobs / elapsed}


def measured(pids: dict[str, int], jobs: int, run: Any) -> dict[str, float]:
    """``run()``'s result plus CPU ms per job of each process (less noisy than wall time)."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    own = time.process_time()
    result: dict[str, float] = run()
    for name, pid in pids.items():
        result[f"cpu_{name}"] = 1000 * (cpu_seconds(pid) - before[name]) / jobs
    result["cpu_enqueuer"] = 1000 * (time.process_time() - own) / jobs
    return result


def one_database(args: argparse.Namespace, db: str, database_url: str, workdir: Path) -> dict:
    redis_server = start_redis(workdir / f"redis-{db}")
    emulator = Emulator("--fixed", "0", "--queue-delay", "0")
    env = worker_env(
        broker_url=redis_server.url,
        database_url=database_url,
        api_base=emulator.base_url,
        STT_POLL_FIRST_DELAY=str(args.first_delay),
    )
    app = activate(env)
    prefix: list[str] = []
    if args.profile:
        prefix = [sys.executable, "-m", "cProfile", "-o", str(args.profile_out)]
    worker = Worker(
        env,
        pool="solo" if args.profile else args.pool,
        concurrency=1 if args.profile else args.concurrency,
        log_path=workdir / f"worker-{db}.log",
        prefix=prefix,
    )
    try:
        client = redis_server.client()
        n = args.enqueuers
        run_baseline(app, client, 50, n)  # warm-up: connections, imports, the table
        run_pipeline(50, "warm", n)
        pids = {
            "worker": worker.process.pid,
            "emulator": emulator.process.pid,
            "redis": redis_server.process.pid,
        }
        base1 = measured(pids, args.jobs, lambda: run_baseline(app, client, args.jobs, n))
        ours = measured(pids, args.jobs, lambda: run_pipeline(args.jobs, "run", n))
        base2 = measured(pids, args.jobs, lambda: run_baseline(app, client, args.jobs, n))
    finally:
        worker.stop(timeout=60)
        emulator.stop()
        redis_server.process.terminate()
        redis_server.process.wait(10)
    base = (base1["jobs_per_s"] + base2["jobs_per_s"]) / 2
    return {
        "db": db,
        "base1": base1,
        "base2": base2,
        "ours": ours,
        "ratio": ours["jobs_per_s"] / base,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="500 jobs")
    parser.add_argument("--db", choices=["postgres", "sqlite", "both"], default="postgres")
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--enqueuers", type=int, default=8, help="enqueueing threads")
    parser.add_argument("--first-delay", type=float, default=0.05, help="STT_POLL_FIRST_DELAY")
    parser.add_argument("--profile", action="store_true", help="solo worker under cProfile")
    parser.add_argument("--profile-out", type=Path, default=Path("bench-profile.prof"))
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs = 500
    note = machine_note()
    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    results = []
    try:
        for db in ["postgres", "sqlite"] if args.db == "both" else [args.db]:
            if db == "postgres":
                with fresh_postgres() as url:
                    results.append(one_database(args, db, url, workdir))
            else:
                results.append(
                    one_database(args, db, f"sqlite:///{workdir / 'jobs.sqlite3'}", workdir)
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    headers = [
        "database",
        "bare chain jobs/s (run 1 / run 2)",
        "ours jobs/s",
        "ratio",
        "goal",
        "worker CPU ms/job: bare / ours",
        "CPU ratio",
        "ours: enqueue s / total s",
    ]
    rows = []
    for r in results:
        b1, b2, o = r["base1"], r["base2"], r["ours"]
        rows.append(
            [
                r["db"],
                f"{b1['jobs_per_s']:.0f} / {b2['jobs_per_s']:.0f}",
                f"{o['jobs_per_s']:.0f}",
                f"{r['ratio']:.2f}x",
                f">= {GOAL}x {'met' if r['ratio'] >= GOAL else 'MISSED'}",
                f"{(b1['cpu_worker'] + b2['cpu_worker']) / 2:.1f} / {o['cpu_worker']:.1f}",
                f"{(b1['cpu_worker'] + b2['cpu_worker']) / 2 / o['cpu_worker']:.2f}x",
                f"{o['enqueue_seconds']:.1f} / {o['seconds']:.1f}",
            ]
        )
    pool = "solo (profiled)" if args.profile else f"{args.pool} x{args.concurrency}"
    title = f"pipeline overhead: {args.jobs} jobs per run, worker pool {pool}"
    print(title)
    print(text_table(headers, rows))
    print(note)
    if not args.no_doc and not args.profile:
        update_doc(
            f"pipeline-{args.db}",
            f"`{command_line()}`\n\n{title}; {note}.\n\n{markdown_table(headers, rows)}",
        )
    return 0 if all(r["ratio"] >= GOAL for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
