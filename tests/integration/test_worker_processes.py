"""``stt-workers worker --processes N``: N real workers on one node, stopped together."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from tasks.jobs import transcribe
from tasks.models import JobStatus
from tests.fixtures.services import WorkerProcess, wait_for
from tests.fixtures.stack import Stack
from workers.supervise import node_names


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def start_node(stack: Stack, *args: str) -> WorkerProcess:
    """``stt-workers worker --processes 2``; waits for both workers (slow on a busy machine)."""
    node = WorkerProcess(
        env={**stack.env, "STT_WORKER_PROCESSES": "2"},
        log_path=stack.workdir / "node.log",
        args=list(args),
    )
    node.start(timeout=120)
    stack.workers.append(node)
    wait_for(lambda: node.log().count(" ready.") == 2, 120, "both workers to be ready", 0.1)
    assert node.process is not None
    return node


def test_two_processes_share_the_queue_and_stop_together_on_sigterm(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(start_worker=False)
    node = start_node(stack, "--concurrency", "4")
    assert node.process is not None
    workers = _children(node.process.pid)
    assert len(workers) == 2
    assert "celery1@" in node.log() and "celery2@" in node.log()

    handles = [
        transcribe(f"https://media.example.org/procs/{i}.mp3", "aai/slam-1") for i in range(8)
    ]
    assert {h.wait(timeout=60).status for h in handles} == {JobStatus.COMPLETED}

    node.process.send_signal(signal.SIGTERM)
    assert node.process.wait(30) == 0
    assert not any(_alive(pid) for pid in workers)


def test_when_one_worker_dies_the_node_stops_with_its_status(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(start_worker=False)
    node = start_node(stack, "--concurrency", "2")
    assert node.process is not None
    first, second = _children(node.process.pid)
    os.kill(first, signal.SIGKILL)
    assert node.process.wait(60) == 128 + signal.SIGKILL
    wait_for(lambda: not _alive(second), 30, "the other worker to stop", 0.1)


def test_node_names_are_distinct_per_process() -> None:
    assert node_names(1, None) == ["celery@%h"]
    assert node_names(2, None) == ["celery1@%h", "celery2@%h"]
    assert node_names(3, "web@box") == ["web1@box", "web2@box", "web3@box"]
    assert node_names(2, "x") == ["x1@%h", "x2@%h"]
