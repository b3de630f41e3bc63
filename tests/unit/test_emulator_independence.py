"""The emulator stands in for the vendor: it shares no code with our client (``tasks``).

If it imported ``tasks.catalog`` (as it once did), the stand-in vendor and the client would
agree by construction and a wrong catalog entry could never fail a test. Its model list is
its own (workers/emulator/models.py); the two are compared here, by test.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tasks.catalog import MODELS
from workers.emulator.models import DOCUMENTED_MODELS

EMULATOR = Path(__file__).resolve().parents[2] / "workers" / "emulator"


def _imported_modules(source: Path) -> list[str]:
    tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_no_module_under_workers_emulator_imports_tasks() -> None:
    sources = sorted(EMULATOR.rglob("*.py"))
    assert len(sources) > 10
    offenders = {
        f"{path.relative_to(EMULATOR)}: {name}"
        for path in sources
        for name in _imported_modules(path)
        if name == "tasks" or name.startswith("tasks.")
    }
    assert not offenders, sorted(offenders)


def test_running_the_emulator_loads_no_tasks_module() -> None:
    code = (
        "import sys, workers.emulator, workers.emulator.cli, workers.emulator.app;"
        "print(sorted(m for m in sys.modules if m == 'tasks' or m.startswith('tasks.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_the_emulator_serves_every_model_of_our_catalog_in_the_same_family() -> None:
    ours = {model_id: info.family.value for model_id, info in MODELS.items()}
    vendor = {model_id: model.family.value for model_id, model in DOCUMENTED_MODELS.items()}
    assert ours == vendor
