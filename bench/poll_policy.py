"""Benchmark 2: how late each poll schedule notices a finished job, and how many polls it costs.

Run from the repository root (simulation: seconds; ``--real``: about two minutes)::

    .venv/bin/python -m bench.poll_policy                 # simulation, 100,000 jobs, + grid
    .venv/bin/python -m bench.poll_policy --real          # + a time-compressed real run
    .venv/bin/python -m bench.poll_policy --quick --real  # 20,000 simulated, 50 real jobs

The workload (seeded): a job's server time is its queued time plus its processing time.
Processing is lognormal with a median of 45 s and sigma 1.0, clipped to [3 s, 600 s]: audio
from a few seconds to an hour transcribed at roughly 10-60x real time gives seconds to ten
minutes, most of it around a minute (p5 ~9 s, p95 ~230 s). Queued time is uniform in
[0.5 s, 3 s]. Detection lag is "server finish -> the poll that sees it"; polls per job
counts every GET including the last.

The simulation drives the real ``tasks.polling.next_poll_delay`` (jitter included) with a
seeded random source, and places polls exactly as ``stt.poll`` does: the first
``first_delay`` after the submit (``pipeline_signature`` sends it with that countdown), then
one ``next_poll_delay(attempt)`` after the other. The vendor's loop polls right after its
create, then every 10 s.
It is exact for the schedule; what it leaves out (task latency: broker hop, HTTP, database
write) is what ``--real`` measures: the same workload, time-compressed ``--compress`` times
(emulator ``--speed 1/k`` and poll settings divided by k), through the real worker, with the
lag read from the emulator's finish time and the row's ``finished_at``. Compression
multiplies the poll rate by k, so the real run is small (80 jobs at k = 10: ~80 polls/s,
well inside the ~130 polls/s one worker node managed on this machine in benchmark 3).
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
from tasks.polling import PollPolicy, next_poll_delay
from tasks.settings import Settings

MEDIAN_PROCESSING = 45.0
SIGMA = 1.0
CLIP = (3.0, 600.0)
QUEUED = (0.5, 3.0)
VENDOR_INTERVAL = 10.0
GRID_FIRST = (1.0, 2.0, 3.0, 5.0, 8.0, 10.0)
GRID_FACTOR = (1.25, 1.5, 2.0)
GRID_CAP = (5.0, 7.5, 10.0, 15.0)
GRID_JOBS = 20_000  # the grid runs on the first ones: 60 policies


def workload(n: int, seed: int) -> list[tuple[float, float]]:
    """``n`` (queued, processing) pairs in seconds."""
    rng = random.Random(seed)
    jobs = []
    for _ in range(n):
        processing = rng.lognormvariate(math.log(MEDIAN_PROCESSING), SIGMA)
        processing = min(max(processing, CLIP[0]), CLIP[1])
        jobs.append((rng.uniform(*QUEUED), processing))
    return jobs


Schedule = Callable[[int, random.Random], float]  # attempt -> seconds until the next poll


def ours(policy: PollPolicy) -> Schedule:
    def delay(attempt: int, rng: random.Random) -> float:
        return next_poll_delay(attempt, policy=policy, rand=rng.random)

    return delay


def fixed(interval: float) -> Schedule:
    return lambda _attempt, _rng: interval


def simulate(
    schedule: Schedule, total: float, rng: random.Random, first_wait: float = 0.0
) -> tuple[float, int]:
    """(lag, polls) for one job the server finishes ``total`` s after the submit.

    The first poll comes ``first_wait`` after the submit: 0 for the vendor's loop, which
    polls right after its create; ``first_delay`` for ours (``pipeline_signature``)."""
    t, polls = first_wait, 1
    while t < total:
        t += schedule(polls - 1, rng)
        polls += 1
    return t - total, polls


@dataclass
class Result:
    name: str
    lags: list[float]
    polls: list[int]
    totals: list[float]

    @property
    def mean_lag(self) -> float:
        return statistics.fmean(self.lags)

    @property
    def p95_lag(self) -> float:
        return sorted(self.lags)[int(0.95 * len(self.lags))]

    @property
    def mean_polls(self) -> float:
        return statistics.fmean(self.polls)


def run_schedule(
    name: str, schedule: Schedule, jobs: Sequence[tuple[float, float]], first_wait: float = 0.0
) -> Result:
    rng = random.Random(1)
    lags, polls, totals = [], [], []
    for queued, processing in jobs:
        lag, n = simulate(schedule, queued + processing, rng, first_wait)
        lags.append(lag)
        polls.append(n)
        totals.append(queued + processing)
    return Result(name, lags, polls, totals)


def oracle(jobs: Sequence[tuple[float, float]]) -> Result:
    totals = [q + p for q, p in jobs]
    return Result("oracle (one poll at the finish)", [0.0] * len(jobs), [1] * len(jobs), totals)


def policy_name(p: PollPolicy) -> str:
    return f"{p.first_delay:g} s x{p.factor:g} cap {p.max_delay:g} s"


def rows_for(results: Sequence[Result], vendor: Result) -> list[list[str]]:
    rows = []
    for r in results:
        rows.append(
            [
                r.name,
                f"{r.mean_lag:.2f}",
                f"{r.mean_lag / vendor.mean_lag:.2f}x",
                f"{r.p95_lag:.2f}",
                f"{r.p95_lag / vendor.p95_lag:.2f}x",
                f"{r.mean_polls:.2f}",
                f"{r.mean_polls / vendor.mean_polls:.2f}x",
            ]
        )
    return rows


HEADERS = ["schedule", "mean lag s", "vs 10 s", "p95 lag s", "vs 10 s", "polls/job", "vs 10 s"]


def grid(jobs: Sequence[tuple[float, float]], vendor: Result) -> list[tuple[PollPolicy, Result]]:
    out = []
    for first in GRID_FIRST:
        for factor in GRID_FACTOR:
            for cap in GRID_CAP:
                if first > cap:
                    continue
                policy = PollPolicy(first_delay=first, factor=factor, max_delay=cap)
                result = run_schedule(policy_name(policy), ours(policy), jobs, policy.first_delay)
                out.append((policy, result))
    return out


def acceptable(r: Result, vendor: Result) -> bool:
    """The issue's goal: no worse than fixed-10 s on lag (mean, p95) or polls, 2x on one."""
    no_worse = (
        r.mean_lag <= vendor.mean_lag
        and r.p95_lag <= vendor.p95_lag
        and r.mean_polls <= vendor.mean_polls
    )
    twice = min(r.mean_lag / vendor.mean_lag, r.p95_lag / vendor.p95_lag) <= 0.5
    return no_worse and twice


def chart(results: Sequence[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = [3, 5, 8, 12, 20, 30, 45, 70, 100, 150, 230, 350, 610]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in results:
        xs, ys = [], []
        for lo, hi in itertools.pairwise(bins):
            lags = [lag for lag, t in zip(r.lags, r.totals, strict=True) if lo <= t < hi]
            if lags:
                xs.append(math.sqrt(lo * hi))
                ys.append(statistics.fmean(lags))
        ax.plot(xs, ys, marker="o", label=f"{r.name} ({r.mean_polls:.1f} polls/job)")
    ax.set_xscale("log")
    ax.set_xlabel("server time of the job (queued + processing), s")
    ax.set_ylabel("mean detection lag, s")
    ax.set_title("Detection lag by job length (simulation, lognormal workload)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def frontier_bound(jobs: Sequence[tuple[float, float]]) -> float:
    """How much lower than any fixed interval ``mean lag x (polls - 1)`` can go at best.

    For a schedule with local interval D(t), a job ending at t waits D(t)/2 on average and
    the polls cost the integral of dt/D(t) up to the finish. Minimising E[lag] for a given
    E[polls] (Lagrange, then Cauchy-Schwarz) gives D(t) ~ 1/sqrt(hazard(t)) and the product
    (integral of sqrt(f S))^2 / 2, against E[T]/2 for any constant interval. The ratio is the
    best any open-loop schedule (one that only knows the time since submit) can do.
    """
    totals = sorted(q + p for q, p in jobs)
    n, step = len(totals), 0.5
    import bisect

    acc, survival_sum = 0.0, 0.0
    t = 0.0
    while t < totals[-1] + step:
        below = bisect.bisect_right(totals, t)
        survival = 1 - below / n
        density = (bisect.bisect_right(totals, t + step) - below) / n / step
        acc += math.sqrt(density * survival) * step
        survival_sum += survival * step
        t += step
    return acc * acc / survival_sum


def real_run(args: argparse.Namespace, policy: PollPolicy, k: float) -> dict[str, Any]:
    """The same workload through the real stack, ``k`` times faster."""
    from tasks import runtime
    from tasks.jobs import transcribe

    jobs = workload(args.real_jobs, args.seed + 1)
    workdir = Path(tempfile.mkdtemp(prefix="bench-poll-"))
    redis_server = start_redis(workdir / "redis")
    # Processing = speed x duration: force-duration-P with speed 1/k gives P/k seconds.
    emulator = Emulator("--speed", f"{1 / k:g}", "--queue-delay", "0")
    try:
        with fresh_postgres() as url:
            env = worker_env(
                broker_url=redis_server.url,
                database_url=url,
                api_base=emulator.base_url,
                STT_POLL_FIRST_DELAY=f"{policy.first_delay / k:g}",
                STT_POLL_FACTOR=f"{policy.factor:g}",
                STT_POLL_MAX_DELAY=f"{policy.max_delay / k:g}",
                STT_POLL_JITTER=f"{policy.jitter:g}",
            )
            activate(env)
            worker = Worker(env, log_path=workdir / "worker.log")
            try:
                handles = []
                for i, (queued, processing) in enumerate(jobs):
                    # The queued time rides in the duration: the emulator's status words do
                    # not matter to the lag, only when the job finishes.
                    seconds = queued + processing
                    handles.append(
                        transcribe(f"https://bench.example/p{i}/force-duration-{seconds:.2f}.mp3")
                    )
                store = runtime.get_store()
                deadline = time.monotonic() + 700 / k * 1.5 + 60
                while time.monotonic() < deadline:
                    counts = store.count_by_status()
                    if counts.get("completed", 0) >= len(jobs):
                        break
                    time.sleep(0.5)
                records = store.get_many([h.id for h in handles])
            finally:
                worker.stop()
            finished = {
                j["generation_id"]: j["finished_ts"] for j in emulator.admin("jobs")["jobs"]
            }
    finally:
        emulator.stop()
        redis_server.process.terminate()
        redis_server.process.wait(10)
    lags, polls = [], []
    for r in records:
        if r.finished_at is None or r.generation_id not in finished:
            continue
        lags.append((r.finished_at.timestamp() - finished[r.generation_id]) * k)
        polls.append(r.polls)
    sim = run_schedule("sim", ours(policy), jobs)
    return {
        "jobs": len(jobs),
        "stored": len(lags),
        "k": k,
        "real": Result("real", lags, polls, []),
        "sim": sim,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="simulated jobs")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="20,000 simulated, 50 real jobs")
    parser.add_argument("--real", action="store_true", help="add the time-compressed real run")
    parser.add_argument("--real-jobs", type=int, default=80)
    parser.add_argument("--compress", type=float, default=10.0, help="time compression k")
    parser.add_argument("--chart", type=Path, default=Path("docs/img/poll_policy.png"))
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.real_jobs = 20_000, 50
    note = machine_note()
    jobs = workload(args.jobs, args.seed)
    vendor = run_schedule("vendor example: fixed 10 s", fixed(VENDOR_INTERVAL), jobs)
    default = PollPolicy.from_settings(Settings())
    previous = PollPolicy(first_delay=2.0, factor=1.5, max_delay=15.0)
    ours_now = run_schedule(
        f"ours, default: {policy_name(default)}", ours(default), jobs, default.first_delay
    )
    main_results = [oracle(jobs), vendor, ours_now]
    if previous != default:
        main_results.append(
            run_schedule(
                f"ours, before: {policy_name(previous)} (polled at once)", ours(previous), jobs
            )
        )
    short = [
        f"{statistics.fmean([lag for lag, t in zip(r.lags, r.totals, strict=True) if t < 30]):.2f}"
        for r in main_results
    ]
    headers = [*HEADERS, "mean lag, jobs < 30 s"]
    rows = [[*row, s] for row, s in zip(rows_for(main_results, vendor), short, strict=True)]
    bound = frontier_bound(jobs)
    grid_results = grid(jobs[:GRID_JOBS], vendor)
    # The pick: no worse than fixed 10 s on any figure (mean lag, p95 lag, polls per job),
    # then the lowest mean lag.
    no_worse = [
        (p, r)
        for p, r in grid_results
        if r.mean_lag <= vendor.mean_lag
        and r.p95_lag <= vendor.p95_lag
        and r.mean_polls <= vendor.mean_polls
    ]
    pick = min(no_worse, key=lambda pr: pr[1].mean_lag) if no_worse else None
    grid_rows = rows_for(
        [r for _, r in sorted(grid_results, key=lambda pr: pr[1].mean_polls)], vendor
    )

    totals = [q + p for q, p in jobs]
    ts = sorted(totals)
    workload_line = (
        f"{len(jobs)} jobs, seed {args.seed}: server time p5 {ts[len(ts) // 20]:.1f} s, "
        f"median {ts[len(ts) // 2]:.1f} s, mean {statistics.fmean(ts):.1f} s, "
        f"p95 {ts[len(ts) * 19 // 20]:.1f} s"
    )
    print("poll policy (simulation):", workload_line)
    print(text_table(headers, rows))
    print(
        "best possible open-loop schedule: mean lag x (polls - 1) at "
        f"{bound:.2f}x of a fixed interval's"
    )
    if pick:
        print(f"grid: no worse than fixed 10 s on all three, least lag: {policy_name(pick[0])}")
    print(f"grid ({len(grid_results)} policies, jitter 0.25) in the document")
    parts = [
        f"`{command_line()}`",
        f"{workload_line}; {note}.",
        markdown_table(headers, rows),
        f"Best possible open-loop schedule (see `frontier_bound`): mean lag x (polls - 1) "
        f"at **{bound:.2f}x** of any fixed interval's.",
    ]
    if pick:
        parts.append(
            f"Grid pick (no worse than fixed 10 s on mean lag, p95 lag and polls per job; "
            f"then the least mean lag): "
            f"**{policy_name(pick[0])}**."
        )
    parts.append(
        "<details><summary>The whole grid</summary>\n\n"
        + markdown_table(HEADERS, grid_rows)
        + "\n\n</details>"
    )

    if args.real:
        real = real_run(args, default, args.compress)
        sim, rl = real["sim"], real["real"]
        real_headers = ["", "jobs stored", "mean lag s", "p95 lag s", "polls/job"]
        real_rows = [
            [
                "simulation",
                real["jobs"],
                f"{sim.mean_lag:.2f}",
                f"{sim.p95_lag:.2f}",
                f"{sim.mean_polls:.2f}",
            ],
            [
                f"real, {real['k']:g}x compressed (lag scaled back)",
                f"{real['stored']}/{real['jobs']}",
                f"{rl.mean_lag:.2f}",
                f"{rl.p95_lag:.2f}",
                f"{rl.mean_polls:.2f}",
            ],
        ]
        overhead = (rl.mean_lag - sim.mean_lag) / real["k"]
        print(text_table(real_headers, real_rows))
        print(f"real minus simulated mean lag: {overhead * 1000:.0f} ms of real time per job")
        parts += [
            f"Time-compressed real run ({policy_name(default)}, {real['jobs']} jobs, "
            f"compression {real['k']:g}x, threads x16 worker, PostgreSQL):",
            markdown_table(real_headers, real_rows),
            f"Real minus simulated mean lag: {overhead * 1000:.0f} ms of real time per job "
            "(broker hop, HTTP, database write).",
        ]
    chart([vendor, ours_now, *main_results[3:]], args.chart)
    print(f"chart: {args.chart}")
    if not args.no_doc:
        update_doc("poll-policy", "\n\n".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
