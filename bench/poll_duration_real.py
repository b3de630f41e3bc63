"""Duration-aware polling through the real stack (issue 15), time-compressed.

Run from the repository root (about 12 minutes at the defaults on a quiet machine, 2 more
per ``--convergence`` N)::

    .venv/bin/python -m bench.poll_duration_real
    .venv/bin/python -m bench.poll_duration_real --jobs 40 --learn-jobs 60 --compress 10 --no-doc

One Redis, one PostgreSQL database, one emulator and a real worker (threads x16). First a
**learning pass**: ``--learn-jobs`` other jobs of the same workload (another seed), each
with its duration given, on today's schedule with no speed model yet, as a new deployment
starts; ``tasks.learn`` then fits the model's speed from their rows, as beat's
``stt.fit_speed`` does (in production from the last 7 days, up to 2,000 jobs per model).
Then the same ``--jobs`` jobs run five times, once per variant, and every figure is read
from what a user sees: the row's ``finished_at`` and ``polls``, the emulator's finish time.

1. **today's default** (8 s x1.5 cap 10 s), each job's duration given, no speed model.
2. **fixed 10 s**: ``STT_POLL_FIRST_DELAY=10``, factor 1, no jitter. The vendor's loop
   (docs/seed) also polls once right after the create: one poll more per job, same lag;
   the "polls vs vendor loop" column counts it.
3. **duration given**: ``transcribe(..., duration=d)``, the learned model: the forecast.
4. **probed**: no duration given; the worker reads it off a WAV header served by a local
   HTTP server (range requests; ``STT_CALLBACK_ALLOW_NETWORKS`` admits loopback).
5. **unknown**: no duration, ``STT_PROBE_AUDIO=0``: today's schedule, whatever the model.
6. with ``--convergence N ...``: **duration given** again, with a model fitted on only N
   jobs of the learning pass (a seeded sample), per N: how a new model converges.

The workload (seeded): audio durations log-uniform from 5 s to an hour; server times drawn
with the emulator's own ``--realistic`` timing (``workers.emulator.timing.server_times``:
queue 0.5 s plus up to 3 s, 10x real time, lognormal spread 0.3, 2 % stragglers at 3x),
drawn once here so that every variant sees the same server time for the same job (a
paired comparison: 60 jobs tell the variants apart). The emulator is told each job's
server time through its ``force-duration`` marker (speed 1, no queue), compressed
``--compress`` times along with every poll setting; lags are scaled back to real seconds.
Task latency (broker hop, HTTP, database write: tens of ms) is scaled back too, so it
weighs ``k`` times more here than in a real deployment, in every variant alike.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
import statistics
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

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
from tasks.speed import SpeedModel, fit
from workers.emulator.timing import REALISTIC, server_times

MODEL = "aai/nano"
DURATIONS = (5.0, 3600.0)
SPEED = 0.1  # the emulator's default: 10x real time
QUEUE_DELAY = 0.5  # the emulator's default
WAV_RATE = 8000  # mono 16-bit: the probe reads only the header


@dataclass(frozen=True)
class Timing:
    """The emulator's ``--realistic`` timing (``workers.emulator.config``'s fields)."""

    queue_delay: float = QUEUE_DELAY
    queue_spread: float = REALISTIC["queue_spread"]
    spread: float = REALISTIC["spread"]
    straggler_rate: float = REALISTIC["straggler_rate"]
    straggler_factor: float = REALISTIC["straggler_factor"]

    def processing_seconds(self, duration: float) -> float:
        return SPEED * duration


@dataclass(frozen=True)
class Job:
    duration: float  # seconds of audio (what is given or probed)
    server: float  # seconds from the create to the finish, uncompressed


def workload(n: int, seed: int) -> list[Job]:
    rng = random.Random(seed)
    jobs = []
    for _ in range(n):
        duration = round(math.exp(rng.uniform(*map(math.log, DURATIONS))), 2)
        queue, processing = server_times(Timing(), duration, rng)
        jobs.append(Job(duration, queue + processing))
    return jobs


def wav_header(seconds: float) -> bytes:
    """A WAV header for ``seconds`` of 8 kHz mono 16-bit audio (the data is never read)."""
    data = round(seconds * WAV_RATE) * 2
    fmt = struct.pack("<HHIIHH", 1, 1, WAV_RATE, WAV_RATE * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", data)
    )


@contextlib.contextmanager
def audio_server(durations: dict[str, float]) -> Iterator[tuple[str, list[str]]]:
    """Serve ``path -> seconds`` as WAV files (a real header, silence after it), answering
    range requests with 206; yields the base URL and the paths asked for."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.lstrip("/")
            asked.append(path)
            if path not in durations:
                self.send_error(404)
                return
            header = wav_header(durations[path])
            size = len(header) + round(durations[path] * WAV_RATE) * 2
            wanted = self.headers.get("Range", "")
            end = size - 1
            if wanted.startswith("bytes=0-"):
                end = min(int(wanted.removeprefix("bytes=0-")), size - 1)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes 0-{end}/{size}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(end + 1))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                body = (header + bytes(end + 1))[: end + 1]
                self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Result:
    name: str
    lags: list[float]
    polls: list[int]
    cpu_ms_per_job: float
    sources: dict[str, int]
    wall: float

    def mean(self) -> float:
        return statistics.fmean(self.lags)

    def p95(self) -> float:
        return sorted(self.lags)[int(0.95 * (len(self.lags) - 1))]

    def mean_polls(self) -> float:
        return statistics.fmean(self.polls)


def run_variant(
    name: str,
    jobs: list[Job],
    k: float,
    env: dict[str, str],
    emulator: Emulator,
    workdir: Path,
    *,
    give: bool,
    probe_base: str | None,
    tag: str,
) -> Result:
    from tasks import runtime
    from tasks.jobs import transcribe

    activate(env)
    worker = Worker(env, log_path=workdir / f"worker-{tag}.log")
    cpu_before = cpu_seconds(worker.process.pid)
    started = time.monotonic()
    try:
        ids = []
        for i, job in enumerate(jobs):
            # The emulator's server time: the job's, compressed (speed 1, queue 0).
            marker = f"{tag}/{i}/force-duration-{job.server / k:.3f}.wav"
            url = f"{probe_base}/{marker}" if probe_base else f"https://bench.example/{marker}"
            ids.append(transcribe(url, MODEL, duration=job.duration if give else None).id)
        store = runtime.get_store()
        deadline = time.monotonic() + max(j.server for j in jobs) / k * 1.5 + 120
        while time.monotonic() < deadline:
            if all(r.done for r in store.get_many(ids)):
                break
            time.sleep(0.5)
        wall = time.monotonic() - started
        cpu = cpu_seconds(worker.process.pid) - cpu_before
        records = store.get_many(ids)
    finally:
        worker.stop()
    finished = {j["generation_id"]: j["finished_ts"] for j in emulator.admin("jobs")["jobs"]}
    lags, polls, sources = [], [], {}
    for r in records:
        sources[str(r.duration_source)] = sources.get(str(r.duration_source), 0) + 1
        if r.finished_at is None or r.generation_id not in finished:
            continue
        lags.append(max(0.0, r.finished_at.timestamp() - finished[r.generation_id]) * k)
        polls.append(r.polls)
    return Result(name, lags, polls, 1000 * cpu / len(jobs), sources, wall)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=120, help="jobs per variant")
    parser.add_argument(
        "--learn-jobs", type=int, default=400, help="jobs of the learning pass (another seed)"
    )
    parser.add_argument("--compress", type=float, default=5.0, help="time compression k")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument(
        "--convergence",
        type=int,
        nargs="*",
        default=[],
        metavar="N",
        help="also run 'duration given' with a model fitted on N learning-pass jobs, per N",
    )
    parser.add_argument("--no-doc", action="store_true", help="print only")
    args = parser.parse_args(argv)
    k = args.compress
    jobs = workload(args.jobs, args.seed)
    learning = workload(args.learn_jobs, args.seed + 1)
    note = machine_note()
    workdir = Path(tempfile.mkdtemp(prefix="bench-duration-"))
    redis_server = start_redis(workdir / "redis")
    emulator = Emulator("--speed", "1", "--queue-delay", "0")
    results: list[Result] = []
    learned: SpeedModel | None = None
    learned_from = 0
    probes = 0
    try:
        with fresh_postgres() as url:
            from tasks import migrate

            migrate.upgrade(url)  # as a deployment does before any worker starts
            base = worker_env(
                broker_url=redis_server.url,
                database_url=url,
                api_base=emulator.base_url,
                STT_POLL_FIRST_DELAY=f"{8 / k:g}",
                STT_POLL_FACTOR="1.5",
                STT_POLL_MAX_DELAY=f"{10 / k:g}",
                STT_POLL_DEADLINE=f"{1800 / k:g}",
                STT_VISIBILITY_TIMEOUT="900",
                STT_CALLBACK_ALLOW_NETWORKS="127.0.0.0/8",
                STT_SPEED_FIT_INTERVAL="0",
                STT_PROBE_AUDIO="1",  # the tests' environment turns it off
            )
            fixed = {
                **base,
                "STT_POLL_FIRST_DELAY": f"{10 / k:g}",
                "STT_POLL_FACTOR": "1",
                "STT_POLL_JITTER": "0",
            }
            no_probe = {**base, "STT_PROBE_AUDIO": "0"}

            def variant(
                name: str, env: dict[str, str], tag: str, *, give: bool, probe: str | None = None
            ) -> None:
                results.append(
                    run_variant(
                        name, jobs, k, env, emulator, workdir, give=give, probe_base=probe, tag=tag
                    )
                )

            run_variant(
                "learning pass", learning, k, no_probe, emulator, workdir,
                give=True, probe_base=None, tag="learn",
            )  # fmt: skip
            from tasks import runtime
            from tasks.learn import fit_speed_models, observations, save_speed_models
            from tasks.store import utcnow

            store = runtime.get_store()
            seen = observations(store, now=utcnow()).get(MODEL, [])
            report = fit_speed_models(store, now=utcnow())
            learned = report.fitted.get(MODEL)
            learned_from = report.jobs.get(MODEL, 0)
            print(f"learned from {learned_from} jobs: {learned}", flush=True)

            def use_model(speed: SpeedModel | None, n: int) -> None:
                """What the worker's next submits read: ``speed``, or no model at all."""
                fitted = {} if speed is None else {MODEL: speed}
                save_speed_models(store, fitted, {MODEL: n}, now=utcnow())

            # Today's default with the duration given but no model yet: the schedule a
            # deployment has before its first fit. Its rows are not learned from.
            use_model(None, 0)
            variant("today's default (8 s x1.5 cap 10 s)", no_probe, "default", give=True)
            use_model(learned, learned_from)
            variant("fixed 10 s", {**fixed, "STT_PROBE_AUDIO": "0"}, "fixed", give=False)
            variant("duration given", no_probe, "given", give=True)
            with audio_server(
                {
                    f"probed/{i}/force-duration-{j.server / k:.3f}.wav": j.duration
                    for i, j in enumerate(jobs)
                }
            ) as (probe_base, asked):
                variant("duration probed", base, "probed", give=False, probe=probe_base)
                probes = len(asked)
            variant("duration unknown (STT_PROBE_AUDIO=0)", no_probe, "unknown", give=False)
            # A new model's convergence: fitted on n jobs of the learning pass (a seeded
            # sample: in production jobs arrive in no order of length), then used.
            for n in args.convergence:
                speed = fit(random.Random(args.seed + n).sample(seen, min(n, len(seen))))
                use_model(speed, n)
                label = f"duration given, model from {n} jobs" + ("" if speed else ": none")
                variant(label, no_probe, f"conv{n}", give=True)
    finally:
        emulator.stop()
        redis_server.process.terminate()
        redis_server.process.wait(10)
    vendor = next(r for r in results if r.name == "fixed 10 s")
    headers = [
        "variant",
        "jobs",
        "mean lag s",
        "p95 lag s",
        "polls/job",
        "mean",
        "p95",
        "polls",
        "polls vs vendor loop",
        "worker CPU ms/job",
        "duration source",
    ]
    rows = [
        [
            r.name,
            len(r.lags),
            f"{r.mean():.2f}",
            f"{r.p95():.2f}",
            f"{r.mean_polls():.2f}",
            f"{r.mean() / vendor.mean():.2f}x",
            f"{r.p95() / vendor.p95():.2f}x",
            f"{r.mean_polls() / vendor.mean_polls():.2f}x",
            f"{r.mean_polls() / (vendor.mean_polls() + 1):.2f}x",
            f"{r.cpu_ms_per_job:.1f}",
            ", ".join(f"{s} {n}" for s, n in sorted(r.sources.items())),
        ]
        for r in results
    ]
    print(text_table(headers, rows))
    print(f"probe requests: {probes}; learned model: {learned}; {note}")
    if not args.no_doc:
        body = (
            f"`{command_line()}` ({args.jobs} jobs per variant, compression {k:g}x, seed "
            f"{args.seed}, threads x16 worker, PostgreSQL; lags in real seconds; ratios "
            f"against fixed 10 s; {note}). Learned from a pass of {args.learn_jobs} other "
            f"jobs (seed {args.seed + 1}; {learned_from} usable): `{learned}`.\n\n"
            + markdown_table(headers, rows)
            + "\n"
        )
        update_doc("poll-duration-real", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
