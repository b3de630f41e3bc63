"""What a user installs: ``python -m build`` makes a wheel and an sdist that install and run.

The package is not published on a registry: users install it from a checkout or from
files built this way (README, "Installing"). The wheel goes into a fresh virtualenv, away
from the checkout, and must bring everything the commands need with it (the Alembic
scripts, the emulator, the console script); the sdist must build and install too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.services import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def run(*args: str | Path, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STT_", "AIML_", "PYTHON"))}
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_build_makes_a_wheel_and_sdist_that_install_and_run(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--outdir", dist, ROOT, cwd=tmp_path)
    (wheel,) = dist.glob("aiml_stt_workers-*.whl")
    (sdist,) = dist.glob("aiml_stt_workers-*.tar.gz")
    run(sys.executable, "-m", "twine", "check", "--strict", wheel, sdist, cwd=tmp_path)

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python, cli = venv / "bin" / "python", venv / "bin" / "stt-workers"
    run(python, "-m", "pip", "install", "-q", wheel, cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"  # not the checkout: nothing may come from ROOT
    elsewhere.mkdir()
    where = run(python, "-c", "import tasks, workers; print(tasks.__file__)", cwd=elsewhere)
    assert str(venv) in where.stdout
    assert "migrate" in run(cli, "--help", cwd=elsewhere).stdout
    assert "--retention" in run(cli, "emulator", "--help", cwd=elsewhere).stdout
    assert "aai/slam-1" in run(cli, "models", cwd=elsewhere).stdout
    # The Alembic scripts are in the wheel, not only in the checkout.
    database = f"sqlite:///{elsewhere / 'jobs.sqlite3'}"
    migrated = run("env", f"STT_DATABASE_URL={database}", cli, "migrate", cwd=elsewhere).stdout
    assert "schema upgraded from none to" in migrated
    listed = run("env", f"STT_DATABASE_URL={database}", cli, "list", cwd=elsewhere)
    assert listed.stdout.strip() == "no jobs"
    # The README's first command, from the installed wheel: the whole embedded pipeline.
    demo = run(cli, "demo", "--jobs", "3", "--job-seconds", "0.2", cwd=elsewhere, timeout=300)
    assert "3/3 completed" in demo.stdout, demo.stdout[-2000:]

    run(python, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", sdist, cwd=tmp_path)
    assert "aai/slam-1" in run(cli, "models", cwd=elsewhere).stdout
