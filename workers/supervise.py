"""Run N worker processes on one node: one threads-pool worker per core.

A threads-pool worker is one Python process, held to one core by the GIL; polls cost CPU
(parsing, publishing), so a 2-core node running one worker uses half of itself
(bench/poll_cost.py). ``stt-workers worker --processes N`` starts N ordinary workers
(each with its own node name, ``celery{i}@host``) and supervises them the way a process
manager would: SIGTERM/SIGINT/SIGQUIT are passed on, and when one worker exits the others
are stopped and this process exits with its status, so the orchestrator (compose,
Kubernetes, systemd) restarts the node whole. No work is lost by that: messages are
acknowledged late and redelivered.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from tasks import metrics

__all__ = ["default_processes", "node_names", "run_processes"]

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
STOP_WAIT_S = 60.0  # after this, stragglers are killed (Celery's warm shutdown waits for tasks)


def default_processes() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def run_processes(count: int, worker_argv: Sequence[str], hostname: str | None) -> int:
    """Start ``count`` workers (``python -m workers.cli worker --processes 1 ...``), wait.

    Returns the exit status of the first worker to exit (after stopping the others).
    """
    # With STT_METRICS_PORT this process serves the workers' metrics (tasks/metrics.py).
    env = {**os.environ, "STT_WORKER_PROCESSES": "1", **metrics.serve_node()}
    children: list[subprocess.Popen[bytes]] = []
    for name in node_names(count, hostname):
        argv = [sys.executable, "-m", "workers.cli", "worker", *worker_argv, f"--hostname={name}"]
        children.append(subprocess.Popen(argv, env=env))

    def forward(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)

    status = _wait_first(children)
    for child in children:
        if child.poll() is None:
            child.terminate()  # warm shutdown: running tasks finish, the rest is redelivered
    deadline = time.monotonic() + STOP_WAIT_S
    for child in children:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return status


def _wait_first(children: Sequence[subprocess.Popen[bytes]]) -> int:
    while True:
        try:
            pid, raw = os.wait()
        except ChildProcessError:
            return 0
        except InterruptedError:  # pragma: no cover - PEP 475 retries wait() for us
            continue
        for child in children:
            if child.pid == pid:
                child.returncode = os.waitstatus_to_exitcode(raw)
                return child.returncode if child.returncode >= 0 else 128 - child.returncode


def node_names(count: int, hostname: str | None) -> list[str]:
    """``celery1@%h``, ``celery2@%h``...: Celery needs a distinct node name per process.

    Named like Celery's own default (``celery@%h``), so a health check can ping
    ``celery@$HOSTNAME,celery1@$HOSTNAME`` whatever the process count.
    """
    name, _, host = (hostname or "celery@%h").partition("@")
    host = host or "%h"
    if count == 1:
        return [f"{name}@{host}"]
    return [f"{name}{index}@{host}" for index in range(1, count + 1)]
