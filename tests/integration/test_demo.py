"""The README's first command: the whole job on embedded defaults, no key, no services."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.fixtures.services import ROOT


def test_demo_runs_every_family_to_completion() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STT_", "AIML_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "workers.cli", "demo", "--jobs", "3"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for model in ("openai/gpt-4o-mini-transcribe", "#g1_nova-2-general", "aai/slam-1"):
        assert model in proc.stdout
    assert "3/3 completed" in proc.stdout
