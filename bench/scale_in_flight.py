"""Benchmark 3: 10,000 jobs in flight on one worker node: all stored, memory, poll rate.

Run from the repository root::

    .venv/bin/python -m bench.scale_in_flight            # 10,000 jobs, 60-300 s each (~8 min)
    .venv/bin/python -m bench.scale_in_flight --quick    # 2,000 jobs, 30-60 s each (~2 min)
    .venv/bin/python -m bench.scale_in_flight --broker rabbitmq --jobs 100000 \
        --first-delay 60 --max-delay 120 --every 30     # the broker holds the waiting polls

One private broker (``--broker redis``: a ``redis-server``; ``--broker rabbitmq``: a vhost
on the machine's RabbitMQ, quorum queue with native delayed delivery, deleted afterwards),
one emulator (``--speed 1 --queue-delay 0``; each URL forces
its duration, uniform in the processing range), PostgreSQL, one worker (threads x16, the
default). All jobs are enqueued at once through ``transcribe()`` (8 threads); every
``--every`` seconds the bench samples the worker's RSS, the broker's memory (Redis
``used_memory``; the RabbitMQ node's RSS, this run's queues, the quorum data folder on disk),
the messages on the queue, held unacked by the worker and waiting in delay queues, the
polls per second the emulator counted (its per-second buckets) and what the schedule
predicts for that window (the real ``next_poll_delay`` with jitter, anchored at each job's
``submitted_at``), and the jobs stored.

Poll countdowns ride on the broker: Redis delivers an ETA task to a worker at once and the
worker holds it (unacked, in memory) until due, so the worker's memory grows with the jobs
in flight; RabbitMQ keeps it in its delay queues. The timeline shows by how much, and the
summary fits the worker's RSS against the jobs in flight (KB per job). ``--time-limit``
ends a run that cannot finish in time: the summary then says how far it got.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench._common import (
    BROKERS,
    Emulator,
    Worker,
    activate,
    command_line,
    fresh_postgres,
    machine_note,
    markdown_table,
    private_broker,
    text_table,
    update_doc,
    worker_env,
)
from tasks.polling import PollPolicy, expected_polls, next_poll_delay

# Worker RSS goals: Redis (the worker holds every waiting poll) and RabbitMQ (it holds none).
MEMORY_GOAL_MB = {"redis": 500.0, "rabbitmq": 150.0}
FINAL = ("completed", "failed", "error", "timeout")


def slope_kb(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (jobs in flight, RSS MB) in KB per job; None if flat in x."""
    n = len(points)
    if n < 2:
        return None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    if var == 0:
        return None
    return 1024 * sum((x - mx) * (y - my) for x, y in points) / var


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
    parser.add_argument("--broker", choices=BROKERS, default="redis")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument(
        "--time-limit", type=float, default=None, help="stop after this many s, report partial"
    )
    parser.add_argument(
        "--no-task-events", action="store_true", help="diagnostic: the worker sends no task events"
    )
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
    emulator = Emulator("--speed", "1", "--queue-delay", "0")
    samples: list[dict[str, Any]] = []
    cpu0 = os.times()
    try:
        with fresh_postgres() as url, private_broker(args.broker, workdir) as broker:
            # The bench's URLs are not fetchable: no duration probe (5 s each to fail).
            schedule: dict[str, str] = {"STT_PROBE_AUDIO": "0"}
            if args.first_delay is not None:
                schedule["STT_POLL_FIRST_DELAY"] = f"{args.first_delay:g}"
            if args.max_delay is not None:
                schedule["STT_POLL_MAX_DELAY"] = f"{args.max_delay:g}"
            if args.no_task_events:
                schedule["BENCH_TASK_EVENTS"] = "0"
            env = worker_env(
                broker_url=broker.url,
                database_url=url,
                api_base=emulator.base_url,
                **schedule,
            )
            activate(env)
            from tasks import runtime
            from tasks.jobs import transcribe

            store = runtime.get_store()
            worker = Worker(env, concurrency=args.concurrency, log_path=workdir / "w.log")
            started = time.time()
            limit = args.time_limit or args.max_seconds * 3 + 600 + args.jobs / 20
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
                    while time.time() < started + limit:
                        if collecting:
                            ids = list(future_ids)  # blocks until all are enqueued
                            collecting = False
                            enqueued_after = time.time() - started
                            # No burst of catch-up samples for the time spent enqueueing.
                            next_sample = max(next_sample, time.time())
                        now = time.time()
                        if now >= next_sample:
                            counts = store.count_by_status()
                            stats = emulator.admin("stats")
                            gets = stats["per_second"]["get"]
                            window = range(int(now - args.every), int(now))
                            polls = sum(gets.get(str(s), 0) for s in window) / args.every
                            reading = broker.read()
                            stored = sum(counts.get(s, 0) for s in FINAL)
                            samples.append(
                                {
                                    "t": now - started,
                                    "rss": worker.rss_mb(),
                                    "broker": reading.memory_mb,
                                    "queues": reading.queues_mb,
                                    "disk": reading.disk_mb,
                                    "queued": reading.queued,
                                    "unacked": reading.held,
                                    "delayed": reading.delayed,
                                    "polls": polls,
                                    "window": (int(now - args.every), int(now)),
                                    "stored": stored,
                                    "in_flight": counts.get("submitted", 0),
                                    "not_submitted": counts.get("pending", 0),
                                    "completed": counts.get("completed", 0),
                                }
                            )
                            s = samples[-1]
                            print(
                                f"t={s['t']:5.0f}s stored {s['stored']:6} in flight "
                                f"{s['in_flight']:6} rss {s['rss']:6.1f} MB broker "
                                f"{s['broker']:6.1f} MB (queues {s['queues']:.1f}, disk "
                                f"{s['disk']:.0f}) polls/s {s['polls']:6.1f} queued {s['queued']} "
                                f"unacked {s['unacked']} delayed {s['delayed']}",
                                flush=True,
                            )
                            if s["stored"] >= args.jobs:
                                break
                            next_sample += args.every
                        time.sleep(0.2)
                records = store.get_many(ids)
                total_gets = emulator.admin("stats")["by_endpoint"].get("get", 0)
                creates = emulator.admin("creates")["jobs"]
                wall = time.time() - started
                worker_cpu = worker.cpu_seconds()
                reconnects = worker.log().count("Connection to broker lost")
            finally:
                worker.stop(timeout=60)
    finally:
        emulator.stop()
    bench_cpu = sum(os.times()[:4]) - sum(cpu0[:4])
    finished = samples[-1]["stored"] >= args.jobs

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
    goal = MEMORY_GOAL_MB[args.broker]
    duplicates = sum(1 for n in creates.values() if n > 1)
    peak_in_flight = max(s["in_flight"] for s in samples)
    # RSS against jobs in flight, past the first minute (the worker's own warm-up).
    slope = slope_kb([(s["in_flight"], s["rss"]) for s in samples if s["t"] >= 60])
    is_rabbit = args.broker == "rabbitmq"
    headers = [
        "t s",
        "stored",
        "in flight",
        "worker RSS MB",
        "RabbitMQ node MB" if is_rabbit else "Redis MB",
        *(["run's queues MB", "quorum disk MB"] if is_rabbit else []),
        "queued",
        "unacked",
        *(["in delay queues"] if is_rabbit else []),
        "polls/s",
        "predicted polls/s",
        "ratio",
    ]
    step = max(1, len(samples) // 24)
    rows = [
        [
            f"{s['t']:.0f}",
            s["stored"],
            s["in_flight"],
            f"{s['rss']:.0f}",
            f"{s['broker']:.1f}",
            *([f"{s['queues']:.1f}", f"{s['disk']:.0f}"] if is_rabbit else []),
            s["queued"],
            s["unacked"],
            *([s["delayed"]] if is_rabbit else []),
            f"{s['polls']:.0f}",
            f"{s['predicted']:.0f}",
            f"{s['polls'] / s['predicted']:.2f}x" if s["predicted"] else "-",
        ]
        for s in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    ]
    summary_headers = ["", "value", "goal / baseline", "ratio"]
    summary = [
        [
            "jobs stored completed" + ("" if finished else " (**run stopped by --time-limit**)"),
            f"{completed}/{args.jobs}",
            f"{args.jobs}",
            f"{completed / args.jobs:.3f}",
        ],
        [
            "jobs created at the API / created twice",
            f"{len(creates)} / {duplicates}",
            f"{args.jobs} / 0",
            f"{len(creates) / args.jobs:.3f}",
        ],
        ["enqueued within", f"{enqueued_after:.0f} s", "", ""],
        ["peak jobs in flight (submitted, not stored)", f"{peak_in_flight}", "", ""],
        [
            "worker RSS max",
            f"{max_rss:.0f} MB",
            f"< {goal:.0f} MB",
            f"{max_rss / goal:.2f}x",
        ],
        [
            "worker RSS slope vs jobs in flight (t >= 60 s)",
            "-" if slope is None else f"{slope:.2f} KB/job",
            "12 KB/held countdown (Redis, benchmark 7)",
            "-" if slope is None else f"{slope / 12:.2f}x",
        ],
        [
            "broker memory max" + (" (RabbitMQ node, shared)" if is_rabbit else " (Redis)"),
            f"{max(s['broker'] for s in samples):.0f} MB",
            "",
            "",
        ],
        *(
            [
                [
                    "this run's queues in RabbitMQ, max",
                    f"{max(s['queues'] for s in samples):.1f} MB",
                    "",
                    "",
                ],
                [
                    "quorum-queue data on disk, max (node-wide)",
                    f"{max(s['disk'] for s in samples):.0f} MB",
                    "",
                    "",
                ],
            ]
            if is_rabbit
            else []
        ),
        [
            "peak polls/s (measured / predicted)",
            f"{peak_polls:.0f}",
            f"{peak_pred:.0f}",
            f"{peak_polls / peak_pred:.2f}x" if peak_pred else "-",
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
        [
            "wall / worker CPU / bench process CPU",
            f"{wall:.0f} s / {worker_cpu:.0f} s / {bench_cpu:.0f} s",
            "",
            f"{worker_cpu / wall:.2f} cores",
        ],
        ["worker lost its broker connection", f"{reconnects} times", "0", ""],
    ]
    title = (
        f"scale in flight: {args.jobs} jobs of {args.min_seconds:g}-{args.max_seconds:g} s, "
        f"broker {args.broker}"
        + (" (task events off: diagnostic switch)" if args.no_task_events else "")
        + f", one worker threads x{args.concurrency}, poll policy {policy.first_delay:g} s "
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
    return 0 if completed == args.jobs and not duplicates and max_rss < goal else 1


if __name__ == "__main__":
    raise SystemExit(main())
