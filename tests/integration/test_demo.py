"""The README's first command: the whole job on embedded defaults, no key, no services.

The demo runs with ``--job-seconds``: emulated jobs take a fixed short time, so a run
does not depend on the audio's length. The fault tests give jobs ten minutes instead: the
demo can then only end within the test's safety timeout by noticing what the test did.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.fixtures.services import ROOT

SAFETY_TIMEOUT = 240.0  # far beyond a run; the demo ends by itself long before
NEVER = "600"  # --job-seconds that no test waits for


def demo_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STT_", "AIML_"))}
    env["PYTHONUNBUFFERED"] = "1"  # its progress lines arrive as they are printed
    return env


def demo_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "workers.cli", "demo", *args]


def test_demo_runs_every_family_to_completion() -> None:
    proc = subprocess.run(
        demo_args("--jobs", "3", "--job-seconds", "0.2"),
        env=demo_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SAFETY_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for model in ("openai/gpt-4o-mini-transcribe", "#g1_nova-2-general", "aai/slam-1"):
        assert model in proc.stdout
    assert "3/3 completed" in proc.stdout
    folder = re.search(r"demo folder: (\S+)", proc.stdout)
    assert folder is not None and not Path(folder.group(1)).exists()


def children_of(pid: int) -> dict[str, int]:
    """The demo's child processes by role ("worker", "emulator"), from /proc."""
    found: dict[str, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) != pid:
            continue
        if b"workers.emulator" in cmdline:
            found["emulator"] = int(stat.parent.name)
        elif b"worker" in cmdline:
            found["worker"] = int(stat.parent.name)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class RunningDemo:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []

    def wait_for_line(self, prefix: str) -> str:
        """Read stdout until a line starts with ``prefix`` (the demo prints it once)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"the demo ended before {prefix!r}:\n{''.join(self.lines)}")

    def finish(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=SAFETY_TIMEOUT)
        return self.proc.returncode, "".join(self.lines) + out, err


@contextmanager
def running_demo() -> Iterator[RunningDemo]:
    """A demo whose jobs never finish within the test, submitted and waiting."""
    proc = subprocess.Popen(
        demo_args("--jobs", "3", "--job-seconds", NEVER),
        env=demo_env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield RunningDemo(proc)
    finally:
        if proc.poll() is None:  # the test failed: do not leave a demo behind
            proc.terminate()
            proc.communicate(timeout=60)


@pytest.mark.parametrize("victim", ["worker", "emulator"])
def test_demo_says_at_once_that_its_worker_or_emulator_died(victim: str) -> None:
    with running_demo() as demo:
        folder = Path(demo.wait_for_line("demo folder: ").split(": ", 1)[1].strip())
        demo.wait_for_line("submitted ")
        children = children_of(demo.proc.pid)
        assert set(children) == {"worker", "emulator"}, children
        os.kill(children[victim], signal.SIGKILL)
        code, out, err = demo.finish()
    assert code == 1, out + err
    assert f"demo failed: the demo's {victim} exited (code -9); last lines of" in err
    # The log's tail is shown: the worker's log lines, the emulator's "listening" line.
    assert ("INFO/MainProcess]" if victim == "worker" else "emulator listening on") in err
    assert not folder.exists()
    assert not any(alive(pid) for pid in children.values())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_demo_stops_its_children_and_removes_its_folder(
    signum: signal.Signals,
) -> None:
    with running_demo() as demo:
        folder = Path(demo.wait_for_line("demo folder: ").split(": ", 1)[1].strip())
        demo.wait_for_line("submitted ")
        children = children_of(demo.proc.pid)
        assert set(children) == {"worker", "emulator"}, children
        assert folder.exists()
        demo.proc.send_signal(signum)
        code, out, err = demo.finish()
    assert code == 128 + signum, out + err
    assert "demo stopped; stopping its worker and emulator" in err
    assert not folder.exists()
    # Stopped and reaped by the demo before it exited (not orphaned): the pids are gone.
    assert not any(alive(pid) for pid in children.values())
