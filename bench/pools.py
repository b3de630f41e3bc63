"""Benchmark 4: jobs/s with the prefork, threads and gevent pools when the API is slow.

Run from the repository root (about four minutes; ``--quick`` about two)::

    .venv/bin/python -m bench.pools               # concurrency 4, 16, 64
    .venv/bin/python -m bench.pools --quick       # concurrency 4, 16

The emulator adds 200-800 ms to every request (``--fault latency_ms=200-800``) and finishes
each job at once (``--fixed 0 --queue-delay 0``), so a job is one slow create and one slow
poll: about one second of waiting and a few milliseconds of CPU, the shape of real traffic.
For each concurrency, each pool gets a fresh worker (same Redis, same PostgreSQL database)
and ``--per-slot`` jobs per slot; jobs/s counts from the first enqueue until every row is
``completed``. The baseline is prefork (Celery's default) at the same concurrency.
gevent needs the ``gevent`` extra (``pip install -e '.[gevent]'``); Celery monkey-patches
sockets for ``-P gevent``, which is what lets requests' and psycopg's waits yield.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench._common import (
    Emulator,
    Worker,
    activate,
    command_line,
    fresh_postgres,
    machine_note,
    markdown_table,
    start_redis,
    text_table,
    update_doc,
    worker_env,
)

POOLS = ("prefork", "threads", "gevent")


def run(
    pool: str, concurrency: int, jobs: int, env: dict[str, str], workdir: Path, tag: str
) -> dict[str, float]:
    from tasks import runtime
    from tasks.jobs import transcribe

    worker = Worker(
        env,
        pool=pool,
        concurrency=concurrency,
        log_path=workdir / f"worker-{tag}.log",
    )
    store = runtime.get_store()
    try:
        before = store.count_by_status().get("completed", 0)
        started = time.perf_counter()
        with ThreadPoolExecutor(8) as executor:
            list(
                executor.map(
                    lambda i: transcribe(f"https://bench.example/{tag}/{i}.mp3"), range(jobs)
                )
            )
        rss = 0.0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            rss = max(rss, worker.rss_mb())
            counts = store.count_by_status()
            if counts.get("completed", 0) - before >= jobs:
                break
            if any(counts.get(s) for s in ("failed", "error", "timeout")):
                raise RuntimeError(f"{pool}: jobs failed: {counts}")
            time.sleep(0.2)
        else:
            raise RuntimeError(f"{pool} x{concurrency}: not done in time")
        elapsed = time.perf_counter() - started
    finally:
        worker.stop(timeout=60)
    return {"jobs_per_s": jobs / elapsed, "seconds": elapsed, "rss": rss}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--per-slot", type=int, default=6, help="jobs per pool slot")
    parser.add_argument("--latency", default="200-800", help="ms added to every request")
    parser.add_argument("--quick", action="store_true", help="concurrency 4 and 16")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.concurrency = [4, 16]
    note = machine_note()
    workdir = Path(tempfile.mkdtemp(prefix="bench-pools-"))
    redis_server = start_redis(workdir / "redis")
    emulator = Emulator(
        "--fixed", "0", "--queue-delay", "0", "--fault", f"latency_ms={args.latency}"
    )
    results: dict[tuple[str, int], dict[str, float]] = {}
    try:
        with fresh_postgres() as url:
            env = worker_env(
                broker_url=redis_server.url, database_url=url, api_base=emulator.base_url
            )
            activate(env)
            for concurrency in args.concurrency:
                jobs = max(40, concurrency * args.per_slot)
                for pool in POOLS:
                    r = run(pool, concurrency, jobs, env, workdir, f"{pool}{concurrency}")
                    results[(pool, concurrency)] = r
                    print(
                        f"{pool:8} x{concurrency:<3} {jobs:5} jobs  {r['jobs_per_s']:6.1f} jobs/s  "
                        f"RSS {r['rss']:.0f} MB",
                        flush=True,
                    )
    finally:
        emulator.stop()
        redis_server.process.terminate()
        redis_server.process.wait(10)
    headers = ["concurrency", "pool", "jobs/s", "vs prefork", "jobs/s per slot", "worker RSS MB"]
    rows = []
    for concurrency in args.concurrency:
        base = results[("prefork", concurrency)]["jobs_per_s"]
        for pool in POOLS:
            r = results[(pool, concurrency)]
            rows.append(
                [
                    concurrency,
                    pool,
                    f"{r['jobs_per_s']:.1f}",
                    f"{r['jobs_per_s'] / base:.2f}x",
                    f"{r['jobs_per_s'] / concurrency:.2f}",
                    f"{r['rss']:.0f}",
                ]
            )
    title = f"pools: API latency {args.latency} ms per request, {args.per_slot} jobs per slot"
    print(title)
    print(text_table(headers, rows))
    if not args.no_doc:
        update_doc(
            "pools", f"`{command_line()}`\n\n{title}; {note}.\n\n{markdown_table(headers, rows)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
