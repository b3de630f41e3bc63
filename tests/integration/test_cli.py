"""The stt-workers CLI against a real worker: submit, wait, status, result, list."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.fixtures.services import ROOT
from tests.fixtures.stack import Stack


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env=stack.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


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
