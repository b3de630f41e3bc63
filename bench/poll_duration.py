"""Duration-aware polling (issue 15): detection lag and polls per job, by what is known.

Run from the repository root (a simulation: seconds)::

    .venv/bin/python -m bench.poll_duration
    .venv/bin/python -m bench.poll_duration --jobs 20000 --no-doc --no-chart

It rewrites its section of docs/benchmarks.md and draws docs/img/poll_duration.png
(convergence and lag distribution; needs the ``plot`` extra, skipped without it).

The workload (seeded): audio durations log-uniform from 5 s to one hour; a job's server
time is a queue wait (uniform 0.5-3.5 s) plus ``rate x duration`` times a lognormal spread
(sigma 0.3), and 2 % of jobs are stragglers taking three times as long. The rate is the
emulator's ``--speed`` default, 0.1 (10x real time); vendors publish turnarounds of
roughly 5-30x real time for batch transcription, so 0.1 sits in that range.

Compared in one run, on the same jobs and random draws: the vendor example's fixed 10 s
loop (polls at 0, 10, 20 s ...), today's default schedule (``next_poll_delay``), and the
duration-aware schedule (``planned_poll_delay``) with the duration known and the speed
model learned from 1,000 other jobs as the store would see them (the goal's row), or the
workload's true parameters (for reference: no fit recovers them exactly, and ``fit`` widens
the spread it measures), and with the duration unknown (which is today's schedule,
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
from pathlib import Path

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
# The goal's row schedules from a model fitted on this many jobs, as a deployment does.
DEPLOYED_FROM = 1000
KNOWN = f"duration-aware, duration known, model learned from {DEPLOYED_FROM:,} jobs"
# Jobs a new model has learned from, for the convergence table (0: no model yet).
LEARN_FROM = (0, MIN_JOBS, 50, 100, 200, 500, 1000)
# The convergence table's jobs: the first this many of the main workload.
CONVERGENCE_TEST = 20_000


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


@dataclass(frozen=True)
class Learned:
    """One row of the convergence table: the model fitted from the first ``n`` jobs."""

    n: int
    model: SpeedModel | None
    lags: list[float]
    polls: list[int]


def convergence(jobs: list[Job], test: list[Job]) -> list[Learned]:
    """A new model: its first N jobs polled on today's schedule, then a fit from them."""
    points = []
    for n in LEARN_FROM:
        model = fit(observe(today, jobs[:n]))
        lags, polls = simulate(learned(model), test)
        points.append(Learned(n, model, lags, polls))
    return points


def p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * len(values))]


def learning_rows(points: list[Learned], base: tuple[list[float], list[int]]) -> list[list[str]]:
    base_lags, base_polls = base
    rows = []
    for p in points:
        rows.append(
            [
                str(p.n),
                "none: today's schedule"
                if p.model is None
                else f"rate {p.model.rate:.3f}, sigma {p.model.sigma:.2f}",
                f"{statistics.fmean(p.lags):.2f}",
                f"{p95(p.lags):.2f}",
                f"{statistics.fmean(p.polls):.2f}",
                f"{statistics.fmean(p.lags) / statistics.fmean(base_lags):.2f}x",
                f"{p95(p.lags) / p95(base_lags):.2f}x",
                f"{statistics.fmean(p.polls) / statistics.fmean(base_polls):.2f}x",
            ]
        )
    return rows


def chart(
    points: list[Learned],
    baselines: dict[str, list[float]],
    distributions: dict[str, list[float]],
    path: Path,
) -> bool:
    """Convergence (left) and the lag distribution per schedule (right); False without
    matplotlib (the ``plot`` extra), so the tables still come out."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    xs = range(len(points))
    left.plot(xs, [statistics.fmean(p.lags) for p in points], "k-o", label="learned: mean")
    left.plot(xs, [p95(p.lags) for p in points], "k--s", label="learned: p95")
    for (name, lags), colour in zip(
        baselines.items(), ("tab:grey", "tab:blue", "tab:red"), strict=True
    ):
        left.axhline(statistics.fmean(lags), color=colour, ls="-", lw=1, label=f"{name}: mean")
        left.axhline(p95(lags), color=colour, ls="--", lw=1, label=f"{name}: p95")
    left.set_xticks(list(xs), [str(p.n) for p in points])
    left.set_xlabel(f"finished jobs the model learned from (< {MIN_JOBS}: today's schedule)")
    left.set_ylabel("detection lag, s")
    top = max(max(p95(p.lags) for p in points), *(p95(v) for v in baselines.values()))
    left.set_ylim(0, top * 1.5)  # room for the legend above the lines
    left.set_title("A new model converges (duration known)")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=7, ncol=2, loc="upper right")
    for (name, lags), colour in zip(
        distributions.items(), ("tab:grey", "tab:blue", "tab:green"), strict=True
    ):
        ordered = sorted(lags)
        step = max(1, len(ordered) // 2000)
        sample = ordered[::step]
        right.plot(
            sample,
            [i * step / len(ordered) for i in range(len(sample))],
            color=colour,
            label=f"{name} (mean {statistics.fmean(lags):.1f} s, p95 {p95(lags):.1f} s)",
        )
    right.axhline(0.95, color="k", lw=0.5, ls=":")
    right.set_xlabel("detection lag, s (axis cut at 1.5x the worst p99)")
    right.set_ylabel("share of jobs detected within")
    # The stragglers' long tail would squeeze the body of the curves: cut at the worst p99.
    cut = max(sorted(v)[int(0.99 * len(v))] for v in distributions.values())
    right.set_xlim(0, cut * 1.5)
    right.set_ylim(0, 1)
    right.set_title("Lag distribution by schedule")
    right.grid(True, alpha=0.3)
    right.legend(fontsize=7, loc="lower right")
    fig.suptitle("Duration-aware polling (simulation)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--no-doc", action="store_true", help="print only")
    parser.add_argument(
        "--chart",
        type=Path,
        default=Path("docs/img/poll_duration.png"),
        help="where to draw the chart (needs the plot extra; skipped without it)",
    )
    parser.add_argument("--no-chart", action="store_true")
    args = parser.parse_args()
    jobs = workload(args.jobs, args.seed)
    # What a deployment schedules from: the model fitted on its own history (a day of a
    # busy model), not the workload's true parameters, which no fit recovers exactly.
    deployed = fit(observe(today, workload(DEPLOYED_FROM, args.seed + 2)))
    variants: dict[str, Planner] = {
        "fixed 10 s (vendor example)": fixed,
        "today's default (8 s x1.5 cap 10 s)": today,
        "duration-aware, duration unknown": informed(False),
        KNOWN: learned(deployed),
        "duration-aware, duration known, the true model": informed(True),
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
    known_lags, known_polls = results[KNOWN]
    met = (
        statistics.fmean(known_lags) <= 0.5 * statistics.fmean(base_lags)
        and p95(known_lags) <= 0.5 * p95(base_lags)
        and statistics.fmean(known_polls) <= statistics.fmean(base_polls)
    )
    verdict = "met" if met else "NOT met"
    print(f"goal (duration known: mean and p95 lag <= 0.5x fixed 10 s, polls <= 1x): {verdict}")
    print(f"model learned from {DEPLOYED_FROM:,} jobs: {deployed}")
    test = jobs[: min(len(jobs), CONVERGENCE_TEST)]
    test_fixed = simulate(fixed, test)
    test_today = simulate(today, test)
    points = convergence(workload(max(LEARN_FROM), args.seed + 1), test)
    learning_headers = ["jobs learned from", "model", *headers[1:]]
    learning = learning_rows(points, test_fixed)
    print(text_table(learning_headers, learning))
    drawn = False
    if not args.no_chart:
        drawn = chart(
            points,
            {
                "fixed 10 s": test_fixed[0],
                "today's default": test_today[0],
                "goal, 0.5x fixed 10 s": [0.5 * lag for lag in test_fixed[0]],
            },
            {
                "fixed 10 s": base_lags,
                "today's default": results["today's default (8 s x1.5 cap 10 s)"][0],
                "duration known (learned model)": known_lags,
            },
            args.chart,
        )
        print(f"chart: {args.chart}" if drawn else "chart skipped: no matplotlib (plot extra)")
    if not args.no_doc:
        body = (
            f"`{command_line()}` (simulation, {args.jobs:,} jobs, seed {args.seed}; ratios "
            f"against fixed 10 s):\n\n"
            + markdown_table(headers, rows)
            + f"\n\nGoal (on the learned model's row): **{verdict}**. The learned model "
            f"(another draw, seed {args.seed + 2}, {DEPLOYED_FROM:,} jobs polled on today's "
            f"schedule): `{deployed}`.\n\n"
            f"A new model's convergence: its first N jobs (a separate draw, seed "
            f"{args.seed + 1}) polled on today's schedule, so the store knows each server time "
            f"only between two polls; `tasks.speed.fit` on them, then the duration-aware "
            f"schedule with that model on the first {len(test):,} jobs above (ratios against "
            f"fixed 10 s on those jobs; under {MIN_JOBS} jobs there is no model and the "
            f"schedule is today's):\n\n" + markdown_table(learning_headers, learning)
        )
        update_doc("poll-duration", body)


if __name__ == "__main__":
    main()
