"""The stt-workers CLI against a real worker: submit, wait, status, result, list."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.services import ROOT, run_cli, wait_for
from tests.fixtures.stack import Stack


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(stack.env, *args)


def test_submit_from_file_waits_then_reads_results(stack: Stack, tmp_path: object) -> None:
    urls = [stack.emulator.sample_url(3), "https://media.example.org/talk.mp3"]
    listing = tmp_path / "urls.txt"  # type: ignore[operator]
    listing.write_text("# two jobs\n" + "\n".join(urls) + "\n")
    proc = cli(stack, "submit", "--from-file", str(listing), "--model", "aai/slam-1", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "transcribing" in proc.stderr  # the progress bar
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert [r["text"] for r in rows] == [stack.emulator.expected_transcript(u) for u in urls]

    job_id = rows[0]["id"]
    status = cli(stack, "status", job_id)
    assert "completed" in status.stdout and "aai/slam-1" in status.stdout
    text = cli(stack, "result", job_id)
    assert text.stdout.strip() == rows[0]["text"]
    srt = cli(stack, "result", job_id, "--format", "srt").stdout
    assert srt.startswith("1\n00:00:0") and " --> " in srt
    vtt = cli(stack, "result", job_id, "--format", "vtt").stdout
    assert vtt.startswith("WEBVTT")
    listed = cli(stack, "list", "--status", "completed").stdout
    assert job_id in listed and rows[1]["id"] in listed
    missing = cli(stack, "status", "no-such-job")
    assert missing.returncode != 0 and "no job" in missing.stderr


@pytest.mark.parametrize(
    "args", [["list"], ["status", "x"], ["result", "x"], ["stats"], ["usage"], ["usage", "--csv"]]
)
def test_read_only_commands_never_create_a_database(tmp_path: Path, args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STT_", "AIML_"))}
    env.update(STT_DATABASE_URL="sqlite:///typo/jobs.sqlite3", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    where = tmp_path.resolve() / "typo" / "jobs.sqlite3"
    assert proc.stderr == f"Error: no store at {where} (set STT_DATABASE_URL)\n"
    assert list(tmp_path.iterdir()) == []  # not even the folder


def test_emulator_help_lists_the_emulators_options() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "workers.cli", "emulator", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: stt-workers emulator")
    for option in ("--port", "--retention", "--fault KEY=VALUE", "--model ID=FAM", "--dialect"):
        assert option in proc.stdout, option


def test_submit_wait_without_a_worker_times_out_and_says_why(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(start_worker=False)
    url = "https://media.example.org/nobody.mp3"
    proc = cli(stack, "submit", url, "--wait", "--timeout", "1")
    assert proc.returncode == 1
    (job_id,) = [line.split()[0] for line in proc.stdout.splitlines()]
    assert "pending" in proc.stdout
    assert proc.stderr.splitlines()[-1] == (
        "timed out after 1 s: 1 of 1 jobs not finished (still pending); "
        "is a worker running on queue stt?"
    )
    unfinished = cli(stack, "result", job_id)
    assert unfinished.returncode == 1
    assert f"job {job_id} is pending, not finished yet" in unfinished.stderr


def test_ctrl_c_while_waiting_prints_the_jobs_already_enqueued(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = make_stack(start_worker=False)
    urls = ["https://media.example.org/a.mp3", "https://media.example.org/b.mp3"]
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "submit", *urls, "--wait"],
            env=stack.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        # The progress bar's label shows once every job is enqueued.
        wait_for(lambda: "transcribing" in stderr_path.read_text(), 60, "the progress bar")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    ids = out.split()
    assert sorted(ids) == sorted(r.id for r in stack.store.list_jobs(limit=None))
    assert "interrupted: 2 of 2 jobs were enqueued and run on" in stderr_path.read_text()
