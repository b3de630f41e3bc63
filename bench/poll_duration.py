"""Duration-aware polling (issue 15): detection lag and polls per job, by what is known.

Run from the repository root (a simulation: seconds)::

    .venv/bin/python -m bench.poll_duration
    .venv/bin/python -m bench.poll_duration --jobs 20000 --no-doc

The workload (seeded): audio durations log-uniform from 5 s to one hour; a job's server
time is a queue wait (uniform 0.5-3.5 s) plus ``rate x duration`` times a lognormal spread
(sigma 0.3), and 2 % of jobs are stragglers taking three times as long. The rate is the
emulator's ``--speed`` default, 0.1 (10x real time); vendors publish turnarounds of
roughly 5-30x real time for batch transcription, so 0.1 sits in that range.

Compared in one run, on the same jobs and random draws: the vendor example's fixed 10 s
loop (polls at 0, 10, 20 s ...), today's default schedule (``next_poll_delay``), and the
duration-aware schedule (``planned_poll_delay``) with the duration known and the speed
model's parameters known, and with the duration unknown (which is today's schedule,
exactly). It drives the real functions of ``tasks.polling`` and ``tasks.speed``; what it
leaves out is the task latency of a real worker (broker hop, HTTP), a few tens of ms per
poll (benchmark 2's ``--real`` run). A second table shows a new model's convergence: the
speed model fitted (``tasks.speed.fit``) from its first N jobs as the store would see them
(polled on today's schedule, each time known only between two polls), then used. The same
comparison through the real stack, the duration probed too: ``bench.poll_duration_real``.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from bench._common import command_line, markdown_table, text_table, update_doc
from tasks.polling import (
    DEFAULT_POLICY,
    Forecast,
    first_poll_delay,
    next_poll_delay,
    planned_poll_delay,
)
from tasks.speed import MIN_JOBS, Observation, SpeedModel, fit

MODEL = SpeedModel(queue=2.0, rate=0.1, sigma=0.3, queue_spread=1.5)
DURATIONS = (5.0, 3600.0)
QUEUE = (0.5, 3.5)
STRAGGLERS = (0.02, 3.0)
VENDOR_INTERVAL = 10.0


@dataclass(frozen=True)
class Job:
    duration: float
    total: float  # server finish, seconds after the submit


def workload(n: int, seed: int) -> list[Job]:
    rng = random.Random(seed)
    jobs = []
    for _ in range(n):
        duration = math.exp(rng.uniform(*map(math.log, DURATIONS)))
        total = rng.uniform(*QUEUE) + MODEL.rate * duration * rng.lognormvariate(0, MODEL.sigma)
        if rng.random() < STRAGGLERS[0]:
            total *= STRAGGLERS[1]
        jobs.append(Job(duration, total))
    return jobs


Planner = Callable[[Job], tuple[float, Callable[[float, int, random.Random], float]]]


def fixed(job: Job) -> tuple[float, Callable[[float, int, random.Random], float]]:
    return 0.0, lambda _t, _a, _r: VENDOR_INTERVAL


def today(job: Job) -> tuple[float, Callable[[float, int, random.Random], float]]:
    return DEFAULT_POLICY.first_delay, lambda _t, a, r: next_poll_delay(a, rand=r.random)


def informed(known: bool) -> Planner:
    def plan(job: Job) -> tuple[float, Callable[[float, int, random.Random], float]]:
        forecast: Forecast | None = MODEL.forecast(job.duration) if known else None
        return first_poll_delay(DEFAULT_POLICY, forecast), lambda t, a, r: planned_poll_delay(
            t, a, forecast=forecast, rand=r.random
        )

    return plan


def simulate(planner: Planner, jobs: list[Job]) -> tuple[list[float], list[int]]:
    rng = random.Random(1)
    lags, polls = [], []
    for job in jobs:
        t, delay = planner(job)
        n = 1
        while t < job.total:
            t += delay(t, n - 1, rng)
            n += 1
        lags.append(t - job.total)
        polls.append(n)
    return lags, polls


def observe(planner: Planner, jobs: list[Job]) -> list[Observation]:
    """What the store would know of ``jobs`` polled by ``planner``: censored server times."""
    rng = random.Random(2)
    seen = []
    for job in jobs:
        t, delay = planner(job)
        lower, n = 0.0, 1
        while t < job.total:
            lower, t = t, t + delay(t, n - 1, rng)
            n += 1
        seen.append(Observation(job.duration, lower, t))
    return seen


def learned(model: SpeedModel | None) -> Planner:
    def plan(job: Job) -> tuple[float, Callable[[float, int, random.Random], float]]:
        forecast = model.forecast(job.duration) if model is not None else None
        return first_poll_delay(DEFAULT_POLICY, forecast), lambda t, a, r: planned_poll_delay(
            t, a, forecast=forecast, rand=r.random
        )

    return plan


def convergence(jobs: list[Job], test: list[Job]) -> list[list[str]]:
    """A new model: its first N jobs polled on today's schedule, then a fit from them."""
    base_lags, _ = simulate(fixed, test)
    rows = []
    for n in (MIN_JOBS - 1, MIN_JOBS, 100, 300, 1000):
        model = fit(observe(today, jobs[:n]))
        lags, polls = simulate(learned(model), test)
        _, base_polls = simulate(fixed, test)
        rows.append(
            [
                str(n),
                "no (today's schedule)"
                if model is None
                else f"rate {model.rate:.3f}, sigma {model.sigma:.2f}",
                f"{statistics.fmean(lags) / statistics.fmean(base_lags):.2f}x",
                f"{p95(lags) / p95(base_lags):.2f}x",
                f"{statistics.fmean(polls) / statistics.fmean(base_polls):.2f}x",
            ]
        )
    return rows


def p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * len(values))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--no-doc", action="store_true", help="print only")
    args = parser.parse_args()
    jobs = workload(args.jobs, args.seed)
    variants: dict[str, Planner] = {
        "fixed 10 s (vendor example)": fixed,
        "today's default (8 s x1.5 cap 10 s)": today,
        "duration-aware, duration unknown": informed(False),
        "duration-aware, duration known": informed(True),
    }
    results = {name: simulate(planner, jobs) for name, planner in variants.items()}
    base_lags, base_polls = results["fixed 10 s (vendor example)"]
    rows = []
    for name, (lags, polls) in results.items():
        rows.append(
            [
                name,
                f"{statistics.fmean(lags):.2f}",
                f"{p95(lags):.2f}",
                f"{statistics.fmean(polls):.2f}",
                f"{statistics.fmean(lags) / statistics.fmean(base_lags):.2f}x",
                f"{p95(lags) / p95(base_lags):.2f}x",
                f"{statistics.fmean(polls) / statistics.fmean(base_polls):.2f}x",
            ]
        )
    headers = ["schedule", "mean lag s", "p95 lag s", "polls/job", "mean", "p95", "polls"]
    print(text_table(headers, rows))
    known_lags, known_polls = results["duration-aware, duration known"]
    met = (
        statistics.fmean(known_lags) <= 0.5 * statistics.fmean(base_lags)
        and p95(known_lags) <= 0.5 * p95(base_lags)
        and statistics.fmean(known_polls) <= statistics.fmean(base_polls)
    )
    verdict = "met" if met else "NOT met"
    print(f"goal (duration known: mean and p95 lag <= 0.5x fixed 10 s, polls <= 1x): {verdict}")
    learning_headers = ["jobs learned from", "model", "mean lag", "p95 lag", "polls"]
    learning = convergence(workload(1000, args.seed + 1), jobs[:20_000])
    print(text_table(learning_headers, learning))
    if not args.no_doc:
        body = (
            f"`{command_line()}` (simulation, {args.jobs:,} jobs, seed {args.seed}; ratios "
            f"against fixed 10 s):\n\n"
            + markdown_table(headers, rows)
            + f"\n\nGoal: **{verdict}**.\n"
        )
        update_doc("poll-duration", body)


if __name__ == "__main__":
    main()
