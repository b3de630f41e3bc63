"""``stt-workers demo``: the whole pipeline on a fresh machine, no key, no services.

It starts the API emulator and a worker in child processes, uses the embedded filesystem
broker (``tasks.fsbroker``: atomic writes) and a SQLite file as the store (both in a
temporary folder), submits sample jobs across the three model families, and prints what
was stored.

The demo never waits for work nothing is doing: if the worker or the emulator exits, it
says so at once with the last lines of that child's log and exits non-zero. SIGTERM is
handled like Ctrl-C: both children are stopped and the temporary folder is removed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import click
import requests

__all__ = ["BROKERS", "ChildDied", "run_demo"]

DEMO_KEY = "sk-emulator-key"  # the emulator's default key; not a real secret
MODELS = ("openai/gpt-4o-mini-transcribe", "#g1_nova-2-general", "aai/slam-1")
# The embedded broker, and kombu's SQLAlchemy transport on a SQLite file: the alternative
# measured by bench/demo_runs.py (docs/operations.md, "The embedded broker").
BROKERS = ("filesystem", "sqlite")
LOG_TAIL_LINES = 20
WAIT_TIMEOUT = 300.0  # the jobs' own budget; a dead worker is noticed long before
STOP_TIMEOUT = 15.0


class ChildDied(RuntimeError):
    """The worker or the emulator exited while the demo needed it."""


class _Stopped(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C does (a BaseException, so nothing swallows it)."""


@dataclass
class _Child:
    """A child process of the demo and the log it writes."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def check(self) -> None:
        """Raise ``ChildDied`` (with the log's last lines) if the process has exited."""
        code = self.proc.poll()
        if code is not None:
            raise ChildDied(
                f"the demo's {self.name} exited (code {code}); last lines of {self.log}:\n"
                + tail(self.log)
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file, indented (or a note that it is empty)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"  (cannot read the log: {exc})"
    last = text.rstrip("\n").splitlines()[-lines:]
    return "\n".join(f"  {line}" for line in last) if last else "  (the log is empty)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, child: _Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child.check()
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise ChildDied(f"the {child.name} did not come up within {timeout} s:\n{tail(child.log)}")


def _wait_log(child: _Child, needle: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child.check()
        if child.log.exists() and needle in child.log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise ChildDied(f"the {child.name} not ready within {timeout} s:\n{tail(child.log)}")


def _sample_urls(base: str, n_jobs: int) -> list[tuple[str, str]]:
    jobs = []
    for i in range(n_jobs):
        model = MODELS[i % len(MODELS)]
        # Half are WAVs the emulator serves (their real duration is read), half are
        # remote-looking URLs (duration derived from the URL, nothing is fetched).
        if i % 2 == 0:
            url = f"{base}/_emulator/samples/{3 + i}s.wav"
        else:
            url = f"https://audio.example.com/demo/interview-{i}.mp3"
        jobs.append((model, url))
    return jobs


def _broker_url(broker: str, workdir: Path) -> str:
    if broker == "sqlite":
        return f"sqla+sqlite:///{workdir / 'broker.sqlite3'}"
    return f"filesystem://{workdir / 'broker'}"


def _spawn(name: str, args: Sequence[str], env: dict[str, str], log: Path) -> _Child:
    with log.open("wb") as out:
        # A session of its own: a terminal's Ctrl-C reaches only the demo, which then
        # stops its children in order, exactly as it does for SIGTERM.
        proc = subprocess.Popen(
            [sys.executable, *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return _Child(name, proc, log)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stopped


def run_demo(
    *,
    n_jobs: int = 9,
    keep: bool = False,
    job_seconds: float | None = None,
    broker: str = "filesystem",
) -> int:
    """Run the demo; the process exit code (0 when every job completed).

    ``job_seconds`` fixes the emulated processing time of every job (default: 0.3 x the
    audio's duration, as a real service roughly does), for tests and benchmarks.
    """
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    workdir = Path(tempfile.mkdtemp(prefix="stt-demo-"))
    children: list[_Child] = []
    try:
        click.echo(f"demo folder: {workdir}")
        return _run(workdir, children, n_jobs, job_seconds, broker)
    except ChildDied as exc:
        click.echo(f"\ndemo failed: {exc}", err=True)
        return 1
    except (KeyboardInterrupt, _Stopped) as exc:
        click.echo("\ndemo stopped; stopping its worker and emulator", err=True)
        return 143 if isinstance(exc, _Stopped) else 130
    finally:
        # A second SIGTERM while stopping must not skip the clean-up.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in reversed(children):
            child.stop()
        if keep:
            click.echo(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


def _run(
    workdir: Path, children: list[_Child], n_jobs: int, job_seconds: float | None, broker: str
) -> int:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.update(
        AIML_API_BASE=base,
        AIML_API_KEY=DEMO_KEY,
        STT_BROKER_URL=_broker_url(broker, workdir),
        STT_DATABASE_URL=f"sqlite:///{workdir / 'demo.sqlite3'}",
        STT_POLL_FIRST_DELAY="0.5",
        STT_POLL_MAX_DELAY="2",
    )
    timing = ["--speed", "0.3"] if job_seconds is None else ["--fixed", str(job_seconds)]
    emulator_args = ["-m", "workers.emulator", "--port", str(port), "--queue-delay", "0.5"]
    emulator = _spawn("emulator", [*emulator_args, *timing], env, workdir / "emulator.log")
    children.append(emulator)
    _wait_http(f"{base}/_emulator/stats", emulator, 30)
    click.echo(f"emulator: {base} (an honest stand-in for api.aimlapi.com)")
    worker_args = ["-m", "workers.cli", "worker", "--concurrency", "8", "--processes", "1"]
    worker_args += ["--loglevel", "INFO"]
    worker = _spawn("worker", worker_args, env, workdir / "worker.log")
    children.append(worker)
    _wait_log(worker, " ready.", 90)
    click.echo(f"worker: ready (threads pool, {broker} broker, SQLite store)\n")

    def check() -> None:
        for child in children:
            child.check()

    return _submit_and_show(env, base, n_jobs, check)


def _submit_and_show(env: dict[str, str], base: str, n_jobs: int, check: Callable[[], None]) -> int:
    # This process is the "web app": it enqueues with the same settings as the worker.
    os.environ.update(env)
    from tasks.jobs import transcribe
    from tasks.models import JobStatus
    from tasks.settings import get_settings
    from workers import render

    get_settings.cache_clear()
    handles = [transcribe(url, model) for model, url in _sample_urls(base, n_jobs)]
    click.echo(f"submitted {len(handles)} jobs across {len(MODELS)} model families")
    records = render.wait_with_progress([h.id for h in handles], timeout=WAIT_TIMEOUT, check=check)
    click.echo()
    click.echo(render.table(records))
    total_cost = sum(r.cost_usd or 0 for r in records)
    audio = sum(r.audio_seconds or r.billed_seconds or 0 for r in records)
    tokens = sum(r.total_tokens or 0 for r in records)
    click.echo(
        f"\n{sum(r.status is JobStatus.COMPLETED for r in records)}/{len(records)} completed; "
        f"audio {audio:.1f} s; tokens {tokens}; estimated cost ${total_cost:.6f}"
    )
    ok = len(records) == len(handles) and all(r.status is JobStatus.COMPLETED for r in records)
    return 0 if ok else 1
