"""Benchmark: is ``stt-workers demo`` boringly reliable on a busy machine?

Runs the demo N times in a row (default 50) with a CPU hog beside it (one busy-looping
process per core), and counts for each embedded broker:

* **hangs**: the demo did not exit within ``--hang-after`` seconds (it is killed);
* **worker deaths**: the demo reported that its worker exited (``demo failed: the demo's
  worker exited``), e.g. kombu's ``JSONDecodeError`` on a half-written message;
* other failures (non-zero exit for any other reason), and the run times of good runs.

``--broker filesystem`` is the embedded default (``tasks.fsbroker``: atomic writes);
``--broker sqlite`` is kombu's SQLAlchemy transport on a SQLite file, the alternative the
choice was measured against (docs/operations.md, "The embedded broker").

    .venv/bin/python -m bench.demo_runs --runs 50 --broker filesystem --broker sqlite

Results are appended to ``--out`` (JSON lines) as they come, so a long run can be
interrupted and still reported with ``--report-only``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench._common import (
    REPO_ROOT,
    command_line,
    machine_note,
    markdown_table,
    text_table,
    update_doc,
)

DIED = "demo failed: the demo's worker exited"
EMULATOR_DIED = "demo failed: the demo's emulator exited"


@contextmanager
def cpu_hog(processes: int) -> Iterator[None]:
    """``processes`` busy loops for the duration of the block."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def one_run(broker: str, jobs: int, job_seconds: float, hang_after: float) -> dict[str, Any]:
    """One demo run: its outcome and wall time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STT_", "AIML_"))}
    args = [sys.executable, "-m", "workers.cli", "demo", "--jobs", str(jobs)]
    args += ["--job-seconds", str(job_seconds), "--broker", broker]
    started = time.monotonic()
    proc = subprocess.Popen(
        args, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = proc.communicate(timeout=hang_after)
        outcome = "ok" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        proc.terminate()  # the demo stops its children and removes its folder on SIGTERM
        out, err = proc.communicate()
        outcome = "hang"
    elapsed = time.monotonic() - started
    if outcome == "failed" and DIED in err:
        outcome = "worker died"
    elif outcome == "failed" and EMULATOR_DIED in err:
        outcome = "emulator died"
    return {
        "broker": broker,
        "outcome": outcome,
        "seconds": round(elapsed, 2),
        "code": proc.returncode,
        "tail": (out + err)[-1500:] if outcome != "ok" else "",
    }


def _pct(values: Sequence[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]:.1f}"


def summarize(results: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    headers = ["broker", "runs", "ok", "hangs", "worker deaths", "other failures",
               "min s", "median s", "p90 s", "max s"]  # fmt: skip
    rows = []
    for broker in dict.fromkeys(r["broker"] for r in results):
        mine = [r for r in results if r["broker"] == broker]
        ok = [r["seconds"] for r in mine if r["outcome"] == "ok"]
        count = {o: sum(r["outcome"] == o for r in mine) for o in ("ok", "hang", "worker died")}
        rows.append([
            broker, len(mine), count["ok"], count["hang"], count["worker died"],
            len(mine) - sum(count.values()), _pct(ok, 0), _pct(ok, 0.5) if ok else "-",
            _pct(ok, 0.9), _pct(ok, 1),
        ])  # fmt: skip
    return headers, rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="demo runs per broker")
    parser.add_argument("--broker", action="append", choices=["filesystem", "sqlite"])
    parser.add_argument("--jobs", type=int, default=9, help="jobs per demo (its default: 9)")
    parser.add_argument("--job-seconds", type=float, default=1.0)
    parser.add_argument("--hang-after", type=float, default=240.0)
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-demo-runs.jsonl"))
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--write-doc", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args(argv)
    brokers = args.broker or ["filesystem"]
    note = machine_note()
    if not args.report_only:
        with cpu_hog(args.hogs), args.out.open("a") as out:
            for i in range(args.runs):
                for broker in brokers:  # interleaved: both see the same machine
                    result = one_run(broker, args.jobs, args.job_seconds, args.hang_after)
                    out.write(json.dumps(result) + "\n")
                    out.flush()
                    print(f"{i + 1}/{args.runs} {broker}: {result['outcome']} "
                          f"{result['seconds']} s", flush=True)  # fmt: skip
                    if result["tail"]:
                        print(result["tail"], flush=True)
    results = [json.loads(line) for line in args.out.read_text().splitlines() if line]
    headers, rows = summarize(results)
    print(text_table(headers, rows))
    if args.write_doc:
        body = (
            f"`{command_line()}`; {args.hogs} busy-loop processes beside it; {note}; "
            f"{args.jobs} jobs per demo, `--job-seconds {args.job_seconds}`.\n\n"
            + markdown_table(headers, rows)
        )
        update_doc("demo-runs", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
