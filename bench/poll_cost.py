"""Polls per node: worker CPU per poll and polls/s, beside the bare ``self.retry`` floor.

Run from the repository root (about eight minutes; ``--quick`` about five)::

    .venv/bin/python -m bench.poll_cost
    .venv/bin/python -m bench.poll_cost --quick
    .venv/bin/python -m bench.poll_cost --profile /tmp/poll-profiles   # + where the CPU goes

One private ``redis-server``, a fresh PostgreSQL database, the emulator with jobs that
never finish within the run (``--fixed 3600``), real worker processes (``bench.worker_app``,
threads x16, as production). Each variant runs ``--tasks`` waiting tasks that re-schedule
themselves every ``--countdown`` seconds, so the worker is never idle; after a warm-up, a
``--window`` of seconds is measured: polls from the emulator's GET counter (the floors: a
Redis counter), worker CPU (user + kernel, all threads) from /proc. Variants, all in the
same run:

- floor, ``raise self.retry``, events on: a task that only re-schedules itself the way
  Celery's documentation shows (issue 13's floor);
- the same with ``send_events=False``;
- floor, reschedule: the same with ``tasks.reschedule`` (no ``Retry`` raised), which is
  how ``stt.poll`` waits: what a poll costs before it asks the server anything;
- stt.poll before issue 13: our poll task as it was at commit ``--before`` (default
  294b807, the last one before issue 13's poll work), unpacked with ``git archive`` and
  run with its own schema, its own ``transcribe()`` and its own worker app;
- stt.poll: our poll task (HTTP GET, parse, lease bookkeeping, re-schedule);

each with 1 worker process and with one process per core (``stt-workers worker``'s default;
before issue 13 a node ran one). The emulator, Redis and PostgreSQL share the machine's
cores with the workers, as on a one-node setup, so the table also gives the polls/s the
worker processes would carry on cores of their own (min(processes, cores) / CPU per poll).

``--profile DIR`` also samples one worker of each single-process variant with py-spy
(``pip install py-spy``; not a dependency) for a second window and prints, and writes to the
document, the CPU per poll by part (``bench/_profile.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench._common import (
    REPO_ROOT,
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

GOAL_CPU_MS = 5.0
GOAL_NODE_RATIO = 3.0
PROFILE_RATE = 250  # py-spy samples per second


def user_system(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of ``pid`` (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def measure_window(
    workers: list[Worker],
    count: Callable[[], int],
    warmup: float,
    window: float,
    others: Sequence[int] = (),
) -> dict[str, float]:
    """Polls/s and worker CPU over ``window``; ``others``: pids (the emulator, Redis) whose
    CPU is reported beside, as cores busy: what the workers share the machine with."""
    time.sleep(warmup)
    before = [user_system(w.process.pid) for w in workers]
    others_before = sum(sum(user_system(pid)) for pid in others)
    n0, t0 = count(), time.monotonic()
    time.sleep(window)
    after = [user_system(w.process.pid) for w in workers]
    others_after = sum(sum(user_system(pid)) for pid in others)
    n1, t1 = count(), time.monotonic()
    polls = max(1, n1 - n0)
    user = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
    system = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
    return {
        "polls_per_s": polls / (t1 - t0),
        "cpu_ms_per_poll": 1000 * (user + system) / polls,
        "sys_ms_per_poll": 1000 * system / polls,
        "cpu_cores": (user + system) / (t1 - t0),
        "others_cores": (others_after - others_before) / (t1 - t0),
    }


# (label, what runs): a floor task of bench/noop.py, our stt.poll, or stt.poll as it was
# before issue 13's poll work (``--before``); the first is the issue's floor.
VARIANTS: list[tuple[str, str]] = [
    ("floor: raise self.retry, events on", "bench.retry_floor"),
    ("floor: raise self.retry, events off", "bench.retry_floor_quiet"),
    ("floor: reschedule (stt.poll's wait)", "bench.reschedule_floor"),
    ("stt.poll before issue 13", "before"),
    ("stt.poll", "stt.poll"),
]
FLOOR = VARIANTS[0][0]
# The last commit before issue 13's poll work (0d25dc6): "today's" poll of the issue.
BEFORE = "294b807"
# Run in the old checkout: its own schema on its own database, then its own transcribe().
ENQUEUE_BEFORE = """
import json, sys
from bench._common import activate
env = json.loads(sys.argv[1])
activate(env)
from tasks import migrate
migrate.upgrade(env["STT_DATABASE_URL"])
from tasks.jobs import transcribe
for i in range(int(sys.argv[2])):
    transcribe(f"https://bench.example/before/{sys.argv[3]}/{i}.mp3")
"""


def run_variant(
    env: dict[str, str],
    redis_client: Any,
    emulator: Emulator,
    args: argparse.Namespace,
    what: str,
    procs: int,
    profile: Path | None,
    before: tuple[Path, str] | None,
    redis_pid: int,
) -> dict[str, float]:
    """Start ``procs`` workers, fill them with waiting tasks, measure one window (and, with
    ``profile``, sample the first worker with py-spy for another). ``before``: the old
    checkout and its database, for the ``before`` variant."""
    from celery import current_app

    from bench.noop import RETRIES_KEY, STOP_KEY
    from tasks.jobs import transcribe

    redis_client.flushdb()
    tag = os.urandom(4).hex()
    if what == "before":
        assert before is not None
        tree, database_url = before
        env = {**env, "STT_DATABASE_URL": database_url, "PYTHONPATH": str(tree)}
        subprocess.run(
            [sys.executable, "-c", ENQUEUE_BEFORE, json.dumps(env), str(args.tasks), tag],
            cwd=tree,
            env=env,
            check=True,
        )
        workers = [Worker(env, cwd=tree) for _ in range(procs)]
    else:
        workers = [Worker(env) for _ in range(procs)]
    try:
        if what in ("stt.poll", "before"):
            if what == "stt.poll":
                for i in range(args.tasks):
                    transcribe(f"https://bench.example/cost/{tag}/{i}.mp3")

            def count() -> int:
                return int(emulator.admin("stats")["by_endpoint"].get("get", 0))
        else:
            task = current_app.tasks[what]
            for _ in range(args.tasks):
                task.delay(args.countdown)

            def count() -> int:
                return int(redis_client.get(RETRIES_KEY) or 0)

        others = [emulator.process.pid, redis_pid]
        result = measure_window(workers, count, args.warmup, args.window, others)
        if profile is not None:
            result["profile_polls"] = float(py_spy(workers[0], count, args.window, profile))
        return result
    finally:
        redis_client.set(STOP_KEY, 1)
        for worker in workers:
            worker.stop()


def py_spy(worker: Worker, count: Callable[[], int], seconds: float, out: Path) -> int:
    """Sample ``worker`` (only threads holding the GIL: its CPU) into ``out`` (collapsed
    stacks); return the polls made meanwhile, to turn samples into ms per poll."""
    n0 = count()
    subprocess.run(
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--pid",
            str(worker.process.pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            str(PROFILE_RATE),
            "--gil",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return count() - n0


def old_checkout(rev: str, into: Path) -> Path:
    """The repository at ``rev``, unpacked into ``into`` (``git archive``: no worktree)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev], cwd=REPO_ROOT, check=True, capture_output=True
    ).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=400, help="waiting tasks (jobs)")
    parser.add_argument("--countdown", type=float, default=0.2, help="seconds between polls")
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="--window 8 --tasks 200")
    parser.add_argument("--procs", type=int, nargs="*", help="worker processes (default 1, cores)")
    parser.add_argument("--only", nargs="*", choices=[v[1] for v in VARIANTS], help="variants")
    parser.add_argument(
        "--before", default=BEFORE, help=f"commit of the 'before' variant (default {BEFORE})"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="folder: py-spy profiles of one worker per variant (needs `pip install py-spy`)",
    )
    parser.add_argument("--no-doc", action="store_true", help="print only")
    args = parser.parse_args()
    if args.quick:
        args.window, args.tasks, args.warmup = 8.0, 200, 5.0
    note = machine_note()  # the load average before the run adds its own
    cores = len(os.sched_getaffinity(0))
    variants = [v for v in VARIANTS if not args.only or v[1] in args.only]
    partial = bool(args.only or args.procs)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, int], dict[str, float]] = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        database_url = stack.enter_context(fresh_postgres())
        before = None
        if any(what == "before" for _, what in variants):
            tree = old_checkout(args.before, tmp / "before")
            before = (tree, stack.enter_context(fresh_postgres(migrated=False)))
        redis_server = start_redis(tmp / "redis")
        emulator = Emulator("--fixed", "3600", "--queue-delay", "0")
        poll_every = str(args.countdown)
        env = worker_env(
            broker_url=redis_server.url,
            database_url=database_url,
            api_base=emulator.base_url,
            STT_POLL_FIRST_DELAY=poll_every,
            STT_POLL_MAX_DELAY=poll_every,
            STT_POLL_FACTOR="1.0",
            # The jobs' audio URLs are made up: a probe would only time out in the submit.
            STT_PROBE_AUDIO="0",
        )
        activate(env)
        from tasks import migrate

        migrate.upgrade(database_url)
        client = redis_server.client()
        try:
            for procs in args.procs or sorted({1, cores}):
                for label, what in variants:
                    profile = None
                    if args.profile and procs == 1:
                        profile = args.profile / f"{what}.txt"
                    results[label, procs] = run_variant(
                        env,
                        client,
                        emulator,
                        args,
                        what,
                        procs,
                        profile,
                        before,
                        redis_server.process.pid,
                    )
                    print(label, procs, results[label, procs], flush=True)
        finally:
            emulator.stop()
            redis_server.process.terminate()
            redis_server.process.wait(10)
    report(args, cores, variants, results, partial, note)


def report(
    args: argparse.Namespace,
    cores: int,
    variants: list[tuple[str, str]],
    results: dict[tuple[str, int], dict[str, float]],
    partial: bool,
    note: str,
) -> None:
    rows: list[list[Any]] = []
    for (variant, procs), r in results.items():
        floor_r = results.get((FLOOR, procs))
        ratio = ""
        if floor_r is not None:
            ratio = f"{r['cpu_ms_per_poll'] / floor_r['cpu_ms_per_poll']:.2f}x"
        rows.append(
            [
                variant,
                procs,
                f"{r['polls_per_s']:.0f}",
                f"{r['cpu_ms_per_poll']:.2f}",
                f"{r['sys_ms_per_poll']:.2f}",
                f"{r['cpu_cores']:.2f}",
                f"{r['others_cores']:.2f}",
                f"{min(procs, cores) * 1000 / r['cpu_ms_per_poll']:.0f}",
                ratio,
            ]
        )
    headers = [
        "variant",
        "worker processes",
        "polls/s",
        "worker CPU ms/poll",
        "of which kernel",
        "worker cores busy",
        "emulator + Redis cores busy",
        "polls/s the processes carry on cores of their own (min(processes, cores) / CPU)",
        "CPU vs floor (raise self.retry, events on)",
    ]
    print(text_table(headers, rows))
    profiles = ""
    if args.profile:
        from bench._profile import parts_table

        profiled = {
            label: (args.profile / f"{what}.txt", int(results[label, 1]["profile_polls"]))
            for label, what in variants
            if results.get((label, 1), {}).get("profile_polls")
        }
        table = parts_table(profiled, PROFILE_RATE)
        print(f"\nms of GIL-holding CPU per poll, by part (py-spy, one process):\n{table}")
        profiles = (
            "\nWhere a poll's CPU goes (py-spy, one worker process, GIL-holding samples at "
            f"{PROFILE_RATE}/s over a second window; ms per poll; kernel time and work "
            "outside the GIL are not sampled):\n\n" + table + "\n"
        )
    summary = verdicts(cores, results)
    print(summary)
    if not args.no_doc and not partial:
        body = (
            f"`{command_line()}` ({note}; {args.tasks} waiting jobs, a poll every "
            f"{args.countdown} s, {args.window:.0f} s measured after {args.warmup:.0f} s; "
            f"'before' is commit {args.before}):\n\n"
            + markdown_table(headers, rows)
            + f"\n\n{summary}\n{profiles}"
        )
        update_doc("poll-cost", body)


def verdicts(cores: int, results: dict[tuple[str, int], dict[str, float]]) -> str:
    """The two goals of issue 13, from this run's numbers."""
    lines = []
    ours = results.get(("stt.poll", 1))
    if ours is not None:
        ms = ours["cpu_ms_per_poll"]
        verdict = "met" if ms <= GOAL_CPU_MS else "NOT met"
        lines.append(
            f"- Worker CPU per poll <= {GOAL_CPU_MS:g} ms: **{verdict}** ({ms:.2f} ms, one "
            f"process; the floor `raise self.retry` with events: "
            f"{results.get((FLOOR, 1), {}).get('cpu_ms_per_poll', float('nan')):.2f} ms)."
        )
    node = results.get(("stt.poll", cores))
    old = results.get(("stt.poll before issue 13", 1))
    if node is not None and old is not None:
        # Before: one process per node; now: one per core. Measured polls/s share the cores
        # with the emulator, Redis and PostgreSQL; capacity is what the cores carry alone.
        measured = node["polls_per_s"] / old["polls_per_s"]
        capacity = (cores / node["cpu_ms_per_poll"]) / (1 / old["cpu_ms_per_poll"])
        lines.append(
            f"- Polls/s per {cores}-core node >= {GOAL_NODE_RATIO:g}x before issue 13 "
            f"(one process at {old['cpu_ms_per_poll']:.2f} ms a poll in this run; the issue "
            "measured ~13 ms on its day): on cores of the workers' own, "
            f"**{'met' if capacity >= GOAL_NODE_RATIO else 'NOT met'}**, {capacity:.1f}x "
            f"({cores} processes at {node['cpu_ms_per_poll']:.2f} ms vs one at "
            f"{old['cpu_ms_per_poll']:.2f} ms); measured here, with the emulator, Redis and "
            f"PostgreSQL on the same {cores} cores: "
            f"**{'met' if measured >= GOAL_NODE_RATIO else 'NOT met'}**, {measured:.1f}x "
            f"({node['polls_per_s']:.0f} vs {old['polls_per_s']:.0f} polls/s; meanwhile the "
            f"emulator and Redis kept {node['others_cores']:.2f} cores busy and the workers "
            f"{node['cpu_cores']:.2f})."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
