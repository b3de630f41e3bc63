"""``stt-workers demo``: the whole pipeline on a fresh machine, no key, no services.

It starts the API emulator and a worker in child processes, uses kombu's filesystem
transport as the broker and a SQLite file as the store (both in a temporary folder),
submits sample jobs across the three model families, and prints what was stored.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import requests

__all__ = ["run_demo"]

DEMO_KEY = "sk-emulator-key"  # the emulator's default key; not a real secret
MODELS = ("openai/gpt-4o-mini-transcribe", "#g1_nova-2-general", "aai/slam-1")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout} s")


def _wait_log(path: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited early; see {path}")
        if path.exists() and needle in path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"worker not ready within {timeout} s; see {path}")


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


def run_demo(*, n_jobs: int = 9, keep: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="stt-demo-"))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.update(
        AIML_API_BASE=base,
        AIML_API_KEY=DEMO_KEY,
        STT_BROKER_URL=f"filesystem://{workdir / 'broker'}",
        STT_DATABASE_URL=f"sqlite:///{workdir / 'demo.sqlite3'}",
        STT_POLL_FIRST_DELAY="0.5",
        STT_POLL_MAX_DELAY="2",
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        click.echo(f"demo folder: {workdir}")
        emulator_log = (workdir / "emulator.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "workers.emulator",
                    "--port",
                    str(port),
                    "--speed",
                    "0.3",
                    "--queue-delay",
                    "0.5",
                ],
                env=env,
                stdout=emulator_log,
                stderr=subprocess.STDOUT,
            )
        )
        _wait_http(f"{base}/_emulator/stats", 20)
        click.echo(f"emulator: {base} (an honest stand-in for api.aimlapi.com)")
        worker_log_path = workdir / "worker.log"
        worker_log = worker_log_path.open("wb")
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "workers.cli",
                    "worker",
                    "--concurrency",
                    "8",
                    "--processes",
                    "1",
                    "--loglevel",
                    "INFO",
                ],
                env=env,
                stdout=worker_log,
                stderr=subprocess.STDOUT,
            )
        )
        _wait_log(worker_log_path, " ready.", procs[-1], 60)
        click.echo("worker: ready (threads pool, filesystem broker, SQLite store)\n")
        return _submit_and_show(env, base, n_jobs)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if keep:
            click.echo(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _submit_and_show(env: dict[str, str], base: str, n_jobs: int) -> int:
    # This process is the "web app": it enqueues with the same settings as the worker.
    os.environ.update(env)
    from tasks.jobs import transcribe
    from tasks.models import JobStatus
    from tasks.settings import get_settings
    from workers import render

    get_settings.cache_clear()
    handles = [transcribe(url, model) for model, url in _sample_urls(base, n_jobs)]
    click.echo(f"submitted {len(handles)} jobs across {len(MODELS)} model families")
    records = render.wait_with_progress([h.id for h in handles], timeout=300)
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
