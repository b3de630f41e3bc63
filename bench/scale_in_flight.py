"""Benchmark 3: 10,000 jobs in flight on one worker node: all stored, memory, poll rate.

Run from the repository root::

    .venv/bin/python -m bench.scale_in_flight            # 10,000 jobs, 60-300 s each (~8 min)
    .venv/bin/python -m bench.scale_in_flight --quick    # 2,000 jobs, 30-60 s each (~2 min)

One private ``redis-server``, one emulator (``--speed 1 --queue-delay 0``; each URL forces
its duration, uniform in the processing range), PostgreSQL, one worker (threads x16, the
default). All jobs are enqueued at once through ``transcribe()`` (8 threads); every
``--every`` seconds the bench samples the worker's RSS, Redis ``used_memory``, the messages
on the queue and held unacked, the polls per second the emulator counted (its per-second
buckets) and what the schedule predicts for that window (the real ``next_poll_delay`` with
jitter, anchored at each job's ``submitted_at``), and the jobs stored.

Poll countdowns ride on the broker: Redis delivers an ETA task to a worker at once and the
worker holds it (unacked, in memory) until due, so the worker's memory grows with the jobs
in flight; the timeline shows by how much.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
from tasks.polling import PollPolicy, expected_polls, next_poll_delay

MEMORY_GOAL_MB = 500.0


def predicted_polls(
    submits: list[tuple[float, float]], policy: PollPolicy, seed: int = 3
) -> dict[int, float]:
    """Polls per epoch second the schedule predicts: (submitted epoch, server seconds) pairs."""
    rng = random.Random(seed)
    buckets: dict[int, float] = {}
    for submitted, duration in submits:
        t, attempt = 0.0, 0
        while True:
            second = int(submitted + t)
            buckets[second] = buckets.get(second, 0) + 1
            if t >= duration:
                break
            t += next_poll_delay(attempt, policy=policy, rand=rng.random)
            attempt += 1
    return buckets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--min-seconds", type=float, default=60.0)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--quick", action="store_true", help="2,000 jobs of 30-60 s")
    parser.add_argument("--every", type=float, default=10.0, help="sampling period, s")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--first-delay", type=float, default=None, help="STT_POLL_FIRST_DELAY")
    parser.add_argument("--max-delay", type=float, default=None, help="STT_POLL_MAX_DELAY")
    parser.add_argument("--doc-name", default=None, help="block name in docs/benchmarks.md")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.min_seconds, args.max_seconds, args.every = 2000, 30.0, 60.0, 5.0
    note = machine_note()
    rng = random.Random(11)
    durations = [rng.uniform(args.min_seconds, args.max_seconds) for _ in range(args.jobs)]
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    redis_server = start_redis(workdir / "redis")
    emulator = Emulator("--speed", "1", "--queue-delay", "0")
    samples: list[dict[str, Any]] = []
    try:
        with fresh_postgres() as url:
            schedule: dict[str, str] = {}
            if args.first_delay is not None:
                schedule["STT_POLL_FIRST_DELAY"] = f"{args.first_delay:g}"
            if args.max_delay is not None:
                schedule["STT_POLL_MAX_DELAY"] = f"{args.max_delay:g}"
            env = worker_env(
                broker_url=redis_server.url,
                database_url=url,
                api_base=emulator.base_url,
                **schedule,
            )
            activate(env)
            from tasks import runtime
            from tasks.jobs import transcribe

            store = runtime.get_store()
            worker = Worker(env, concurrency=args.concurrency, log_path=workdir / "w.log")
            r = redis_server.client()
            started = time.time()
            try:

                def enqueue(i: int) -> str:
                    seconds = durations[i]
                    return transcribe(
                        f"https://bench.example/s{i}/force-duration-{seconds:.1f}.mp3"
                    ).id

                with ThreadPoolExecutor(8) as pool:
                    future_ids = pool.map(enqueue, range(args.jobs))
                    next_sample = started
                    ids: list[str] = []
                    collecting = True
                    deadline = started + args.max_seconds * 3 + 600
                    while time.time() < deadline:
                        if collecting:
                            ids = list(future_ids)  # blocks until all are enqueued
                            collecting = False
                            enqueued_after = time.time() - started
                        now = time.time()
                        if now >= next_sample:
                            counts = store.count_by_status()
                            stats = emulator.admin("stats")
                            gets = stats["per_second"]["get"]
                            window = range(int(now - args.every), int(now))
                            polls = sum(gets.get(str(s), 0) for s in window) / args.every
                            samples.append(
                                {
                                    "t": now - started,
                                    "rss": worker.rss_mb(),
                                    "redis": int(r.info("memory")["used_memory"]) / 2**20,
                                    "queued": int(r.llen("stt")),
                                    "unacked": int(r.hlen("unacked")),
                                    "polls": polls,
                                    "window": (int(now - args.every), int(now)),
                                    "stored": sum(
                                        counts.get(s, 0)
                                        for s in ("completed", "failed", "error", "timeout")
                                    ),
                                    "completed": counts.get("completed", 0),
                                }
                            )
                            s = samples[-1]
                            print(
                                f"t={s['t']:5.0f}s stored {s['stored']:6} rss {s['rss']:6.1f} MB "
                                f"redis {s['redis']:6.1f} MB polls/s {s['polls']:6.1f} "
                                f"queued {s['queued']} unacked {s['unacked']}",
                                flush=True,
                            )
                            if s["stored"] >= args.jobs:
                                break
                            next_sample += args.every
                        time.sleep(0.2)
                records = store.get_many(ids)
                total_gets = emulator.admin("stats")["by_endpoint"].get("get", 0)
            finally:
                worker.stop(timeout=60)
    finally:
        emulator.stop()
        redis_server.process.terminate()
        redis_server.process.wait(10)

    defaults = PollPolicy()
    policy = PollPolicy(
        first_delay=args.first_delay or defaults.first_delay,
        max_delay=args.max_delay or defaults.max_delay,
    )
    by_id = {rec.id: rec for rec in records}
    submits = [
        (rec.submitted_at.timestamp(), d)
        for rec, d in ((by_id.get(i), d) for i, d in zip(ids, durations, strict=True))
        if rec is not None and rec.submitted_at is not None
    ]
    predicted = predicted_polls(submits, policy)
    for s in samples:
        lo, hi = s["window"]
        s["predicted"] = sum(predicted.get(sec, 0) for sec in range(lo, hi)) / (hi - lo)
    completed = sum(1 for rec in records if rec.status.value == "completed")
    expected_total = sum(expected_polls(d, policy) for d in durations)
    stored_polls = sum(rec.polls for rec in records)
    max_rss = max(s["rss"] for s in samples)
    peak_polls = max(s["polls"] for s in samples)
    peak_pred = max(s["predicted"] for s in samples)
    headers = [
        "t s",
        "stored",
        "worker RSS MB",
        "Redis MB",
        "queued",
        "unacked",
        "polls/s",
        "predicted polls/s",
        "ratio",
    ]
    step = max(1, len(samples) // 24)
    rows = [
        [
            f"{s['t']:.0f}",
            s["stored"],
            f"{s['rss']:.0f}",
            f"{s['redis']:.1f}",
            s["queued"],
            s["unacked"],
            f"{s['polls']:.0f}",
            f"{s['predicted']:.0f}",
            f"{s['polls'] / s['predicted']:.2f}x" if s["predicted"] else "-",
        ]
        for s in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    ]
    summary_headers = ["", "value", "goal / baseline", "ratio"]
    summary = [
        [
            "jobs stored completed",
            f"{completed}/{args.jobs}",
            f"{args.jobs}",
            f"{completed / args.jobs:.3f}",
        ],
        ["enqueued within", f"{enqueued_after:.0f} s", "", ""],
        [
            "worker RSS max",
            f"{max_rss:.0f} MB",
            f"< {MEMORY_GOAL_MB:.0f} MB",
            f"{max_rss / MEMORY_GOAL_MB:.2f}x",
        ],
        [
            "peak polls/s (measured / predicted)",
            f"{peak_polls:.0f}",
            f"{peak_pred:.0f}",
            f"{peak_polls / peak_pred:.2f}x",
        ],
        [
            "GETs at the emulator / expected_polls() sum",
            f"{total_gets}",
            f"{expected_total}",
            f"{total_gets / expected_total:.2f}x",
        ],
        [
            "polls on the rows",
            f"{stored_polls}",
            f"{expected_total}",
            f"{stored_polls / expected_total:.2f}x",
        ],
    ]
    title = (
        f"scale in flight: {args.jobs} jobs of {args.min_seconds:g}-{args.max_seconds:g} s, "
        f"one worker threads x{args.concurrency}, poll policy {policy.first_delay:g} s "
        f"x{policy.factor:g} cap {policy.max_delay:g} s"
    )
    print(title)
    print(text_table(headers, rows))
    print(text_table(summary_headers, summary))
    if not args.no_doc:
        name = args.doc_name or ("scale-quick" if args.quick else "scale")
        update_doc(
            name,
            "\n\n".join(
                [
                    f"`{command_line()}`",
                    f"{title}; {note}.",
                    markdown_table(summary_headers, summary),
                    markdown_table(headers, rows),
                ]
            ),
        )
    return 0 if completed == args.jobs and max_rss < MEMORY_GOAL_MB else 1


if __name__ == "__main__":
    raise SystemExit(main())
