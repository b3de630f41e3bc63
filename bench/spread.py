"""Benchmark 8: horizontal spread: one worker node with 10,000 jobs waiting, two more started.

Run from the repository root::

    .venv/bin/python -m bench.spread                      # RabbitMQ then Redis, 10,000 jobs
    .venv/bin/python -m bench.spread --quick              # 2,000 jobs, 20 s polls
    .venv/bin/python -m bench.spread --broker rabbitmq    # one broker only

Per broker: a private broker (a vhost on the machine's RabbitMQ, deleted afterwards, or a
private ``redis-server``), a fresh PostgreSQL database, the emulator, and worker node 1
(one process, threads x16, like ``stt-workers worker --processes 1``). Every job's server
processing outlasts the run, and the poll schedule is one fixed interval (first delay =
cap = ``--interval``, the default jitter), so each job polls once per cycle. Node 1 takes
all N submits; once every job is submitted (its first poll waiting), nodes 2 and 3 start.
From the moment both are ready, each node's own count of the polls it ran
(``stt_api_requests_total{endpoint="get"}`` on its Prometheus port, one per node) is read
at every cycle boundary: the share each node ran in each of the next ``--cycles`` cycles
is the result. RSS and CPU time per node from /proc.

Where the waiting polls are decides the spread: RabbitMQ (quorum queue, native delayed
delivery) keeps them in the broker, so a due poll goes to whichever node is free; Redis
hands each countdown to a worker at once, and node 1 holds all N until they come due.
"""

from __future__ import annotations

import argparse
import contextlib
import os
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
    free_port,
    fresh_postgres,
    machine_note,
    markdown_table,
    metric_value,
    private_broker,
    text_table,
    update_doc,
    worker_env,
)

NODES = 3
SHARE_GOAL = (0.25, 0.45)
POLLS = "stt_api_requests_total"


def polls_by_node(ports: list[int]) -> list[float]:
    """Each node's own count of the GETs it sent (one per poll)."""
    return [metric_value(port, POLLS, endpoint="get") for port in ports]


def _stop_all(workers: list[Worker]) -> None:
    for worker in workers:
        worker.stop(timeout=60)


def run(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """One broker: node 1 with every job waiting, then three nodes for ``--cycles`` cycles."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-spread-{kind}-"))
    workers: list[Worker] = []
    # Unwound last-in first-out: the workers stop before their broker and database go.
    with contextlib.ExitStack() as stack:
        emulator = Emulator("--speed", "1", "--queue-delay", "0")
        stack.callback(emulator.stop)
        url = stack.enter_context(fresh_postgres())
        broker = stack.enter_context(private_broker(kind, workdir))
        stack.callback(_stop_all, workers)
        interval = f"{args.interval:g}"
        env = worker_env(
            broker_url=broker.url,
            database_url=url,
            api_base=emulator.base_url,
            STT_POLL_FIRST_DELAY=interval,
            STT_POLL_MAX_DELAY=interval,
            STT_POLL_DEADLINE=f"{args.job_seconds * 2:g}",
            # The bench's URLs are not fetchable: no duration probe (5 s each to fail).
            STT_PROBE_AUDIO="0",
            **({"BENCH_TASK_EVENTS": "0"} if args.no_task_events else {}),
        )
        activate(env)
        from tasks import runtime
        from tasks.jobs import transcribe

        store = runtime.get_store()
        ports = [free_port() for _ in range(NODES)]

        def start(node: int) -> Worker:
            return Worker(
                {**env, "STT_METRICS_PORT": str(ports[node])},
                concurrency=args.concurrency,
                log_path=workdir / f"node{node + 1}.log",
                name=f"node{node + 1}",
            )

        workers.append(start(0))
        started = time.time()
        seconds = f"{args.job_seconds:.0f}"

        def enqueue(i: int) -> str:
            return transcribe(f"https://bench.example/s{i}/force-duration-{seconds}.mp3").id

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(enqueue, range(args.jobs)))
        enqueued = time.time() - started
        while True:
            counts = store.count_by_status()
            if (
                counts.get("submitted", 0)
                + sum(counts.get(s, 0) for s in ("completed", "failed", "error", "timeout"))
                >= args.jobs
                or time.time() - started > args.jobs / 20 + 300
            ):
                break
            print(f"[{kind}] t={time.time() - started:.0f} s {counts}", flush=True)
            time.sleep(10)
        submitted = time.time() - started
        # "Waiting" means waiting where the broker puts it: node 1 must first catch up
        # with its backlog (due polls still on the queue), or the new nodes would simply
        # share that backlog, on any broker.
        before = broker.read()
        while before.queued > args.jobs / 100 and time.time() - started < submitted + 600:
            print(f"[{kind}] node 1 catching up: {before}", flush=True)
            time.sleep(10)
            before = broker.read()
        caught_up = time.time() - started
        rss_alone = workers[0].rss_mb()
        print(
            f"[{kind}] {counts} after {submitted:.0f} s (enqueued in {enqueued:.0f} s); "
            f"node1 RSS {rss_alone:.0f} MB; broker {before}",
            flush=True,
        )
        polls_alone = polls_by_node(ports[:1])[0]
        with ThreadPoolExecutor(2) as pool:
            workers += list(pool.map(start, range(1, NODES)))
        t0 = time.time()
        cpu0 = [w.cpu_seconds() for w in workers]
        marks = [polls_by_node(ports)]
        readings = []
        for cycle in range(1, args.cycles + 1):
            while time.time() < t0 + cycle * args.interval:
                time.sleep(0.5)
            marks.append(polls_by_node(ports))
            readings.append(broker.read())
            print(f"[{kind}] cycle {cycle}: {marks[-1]} {readings[-1]}", flush=True)
        wall = time.time() - t0
        cpu = [w.cpu_seconds() - c for w, c in zip(workers, cpu0, strict=True)]
        rss = [w.rss_mb() for w in workers]
        final = store.count_by_status()
        # A node whose broker connection dropped (RabbitMQ: missed heartbeats) stalled.
        reconnects = [w.log().count("Connection to broker lost") for w in workers]
    per_cycle = [
        [after - prev for after, prev in zip(marks[c + 1], marks[c], strict=True)]
        for c in range(args.cycles)
    ]
    return {
        "kind": kind,
        "enqueued_s": enqueued,
        "submitted_s": submitted,
        "caught_up_s": caught_up,
        "counts": counts,
        "final": final,
        "rss_alone": rss_alone,
        "polls_alone": polls_alone,
        "before": before,
        "readings": readings,
        "per_cycle": per_cycle,
        "wall": wall,
        "cpu": cpu,
        "rss": rss,
        "reconnects": reconnects,
    }


def share_rows(result: dict[str, Any]) -> tuple[list[list[Any]], bool]:
    """Per node: polls and share in each cycle and over all of them; whether the goal held."""
    per_cycle: list[list[float]] = result["per_cycle"]
    totals = [sum(cycle[n] for cycle in per_cycle) for n in range(NODES)]
    everything = sum(totals) or 1.0
    rows: list[list[Any]] = []
    ok = True
    for n in range(NODES):
        cells: list[Any] = [
            f"{result['kind']}",
            f"node {n + 1}" + (" (had the jobs)" if not n else " (new)"),
        ]
        for cycle in per_cycle:
            in_cycle = sum(cycle) or 1.0
            cells.append(f"{cycle[n]:,.0f} ({cycle[n] / in_cycle:.0%})")
        share = totals[n] / everything
        ok = ok and SHARE_GOAL[0] <= share <= SHARE_GOAL[1]
        cells += [
            f"{totals[n]:,.0f}",
            f"**{share:.0%}**",
            f"{result['cpu'][n]:.0f}",
            f"{1000 * result['cpu'][n] / totals[n]:.1f}" if totals[n] else "-",
            f"{result['rss'][n]:.0f}",
        ]
        rows.append(cells)
    return rows, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", action="append", choices=BROKERS, help="default: both")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=120.0, help="poll interval, s")
    parser.add_argument("--cycles", type=int, default=2)
    parser.add_argument("--job-seconds", type=float, default=1500.0, help="server processing")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="2,000 jobs, 20 s polls")
    parser.add_argument(
        "--no-task-events", action="store_true", help="diagnostic: workers send no task events"
    )
    parser.add_argument("--doc-name", default=None, help="block name in docs/benchmarks.md")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.interval, args.job_seconds = 2000, 30.0, 600.0
    note = machine_note()
    kinds = args.broker or ["rabbitmq", "redis"]
    wall0, cpu0 = time.time(), os.times()
    results = [run(kind, args) for kind in kinds]
    bench_cpu = sum(os.times()[:4]) - sum(cpu0[:4])
    headers = [
        "broker",
        "node",
        *[f"polls in cycle {c + 1} (share)" for c in range(args.cycles)],
        "polls",
        "share",
        "CPU s",
        "CPU ms / poll",
        "RSS MB",
    ]
    rows: list[list[Any]] = []
    verdicts: dict[str, bool] = {}
    for result in results:
        node_rows, verdicts[result["kind"]] = share_rows(result)
        rows += node_rows
    context_headers = [
        "broker",
        "jobs submitted (all on node 1)",
        "enqueued / all submitted / backlog drained, s",
        "node 1 RSS alone, MB",
        "at the start: on the queue / held by node 1 / in delay queues",
        "broker memory MB (run's queues)",
        "polls / expected in the window",
        "window wall s",
        "broker connection lost (per node)",
        "shares within 25-45%",
    ]
    context: list[list[Any]] = []
    for result in results:
        before = result["before"]
        window_polls = sum(sum(c) for c in result["per_cycle"])
        context.append(
            [
                result["kind"],
                f"{result['counts'].get('submitted', 0):,}/{args.jobs:,}",
                f"{result['enqueued_s']:.0f} / {result['submitted_s']:.0f} / "
                f"{result['caught_up_s']:.0f}",
                f"{result['rss_alone']:.0f}",
                f"{before.queued:,} / {before.held:,} / {before.delayed:,}",
                f"{before.memory_mb:.0f} ({before.queues_mb:.1f})",
                f"{window_polls:,.0f} / {args.jobs * args.cycles:,} "
                f"({window_polls / (args.jobs * args.cycles):.2f}x)",
                f"{result['wall']:.0f}",
                " / ".join(str(n) for n in result["reconnects"]),
                "yes" if verdicts[result["kind"]] else "**no**",
            ]
        )
    title = (
        f"spread: {args.jobs:,} jobs waiting on node 1, nodes 2 and 3 started, "
        f"{args.cycles} poll cycles of {args.interval:g} s (jitter 25%) counted from when they "
        f"are ready; each node one process, threads x{args.concurrency}; polls counted by each "
        f'node\'s own stt_api_requests_total{{endpoint="get"}}'
        + ("; **task events off on every node (diagnostic switch)**" if args.no_task_events else "")
    )
    timing = (
        f"whole run {time.time() - wall0:.0f} s wall; bench process CPU {bench_cpu:.0f} s; "
        f"load average at the end {os.getloadavg()[0]:.1f}"
    )
    print(title)
    print(text_table(headers, rows))
    print(text_table(context_headers, context))
    print(timing)
    if not args.no_doc:
        name = args.doc_name or ("spread-quick" if args.quick else "spread")
        update_doc(
            name,
            "\n\n".join(
                [
                    f"`{command_line()}`",
                    f"{title}; {note}; {timing}.",
                    markdown_table(headers, rows),
                    markdown_table(context_headers, context),
                ]
            ),
        )
    return 0 if verdicts.get("rabbitmq", True) else 1


if __name__ == "__main__":
    raise SystemExit(main())
