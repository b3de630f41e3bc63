"""Issue 12, cases 14 and 15: failures a newcomer meets are one clear line, not a traceback.

Case 14: a worker without ``AIML_API_KEY`` refuses to start (the demo's worker gets the
embedded emulator's key). Case 15: an unreachable broker or database, a malformed
``STT_DATABASE_URL`` and a missing ``--from-file`` make the CLI print one line naming the
setting or file, exit 1 (``--debug`` / ``STT_LOG_LEVEL=DEBUG`` show the traceback), and
make ``transcribe()`` raise ``EnqueueError``, which the example web apps answer with 503.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tasks import EnqueueError, TransientError, transcribe
from tests.fixtures.services import free_port, run_cli
from tests.fixtures.stack import Stack
from tests.fixtures.webapps import add_example_path

AUDIO = "https://media.example.org/a.mp3"


def run(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_cli(env, *args, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The command failed with exit 1 and exactly one line on stderr holding ``needles``."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("key", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_a_worker_without_an_api_key_refuses_to_start(
    make_stack: Callable[..., Stack], key: str | None
) -> None:
    stack = make_stack(start_worker=False)
    env = {k: v for k, v in stack.env.items() if k != "AIML_API_KEY"}
    if key is not None:
        env["AIML_API_KEY"] = key
    proc = run(env, "worker", "--concurrency", "1", timeout=60)
    line = one_line_error(proc, "AIML_API_KEY")
    assert "not set" in line or "empty" in line
    assert stack.broker_messages() == 0


def _dead_broker() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def _dead_database() -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"


def test_an_unreachable_broker_is_one_line_naming_stt_broker_url(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(start_worker=False, STT_BROKER_URL=_dead_broker())
    line = one_line_error(run(stack.env, "submit", AUDIO), "STT_BROKER_URL", "unreachable")
    assert "could not enqueue job" in line
    debug = run(stack.env, "--debug", "submit", AUDIO)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    as_env = run({**stack.env, "STT_LOG_LEVEL": "DEBUG"}, "submit", AUDIO)
    assert as_env.returncode != 0 and "Traceback" in as_env.stderr


@pytest.mark.parametrize("command", [["submit", AUDIO], ["status", "x"], ["list"], ["stats"]])
def test_an_unreachable_database_is_one_line_naming_stt_database_url(
    make_stack: Callable[..., Stack], command: list[str]
) -> None:
    stack = make_stack(start_worker=False, STT_DATABASE_URL=_dead_database())
    line = one_line_error(run(stack.env, *command), "STT_DATABASE_URL", "unreachable")
    assert "127.0.0.1" in line


@pytest.mark.parametrize("url", ["not a url", "postgres://u@h/db", "sqlite//missing-colon"])
def test_a_malformed_database_url_is_one_line_naming_it(
    make_stack: Callable[..., Stack], url: str
) -> None:
    stack = make_stack(start_worker=False)
    env = {**stack.env, "STT_DATABASE_URL": url}
    for command in (["list"], ["submit", AUDIO], ["worker"]):
        one_line_error(run(env, *command, timeout=60), "STT_DATABASE_URL")


def test_a_missing_from_file_is_one_line_naming_it(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = make_stack(start_worker=False)
    missing = tmp_path / "nope" / "urls.txt"
    one_line_error(
        run(stack.env, "submit", "--from-file", str(missing)), str(missing), "No such file"
    )
    assert stack.broker_messages() == 0


def test_transcribe_raises_enqueue_error_for_broker_and_database(
    make_stack: Callable[..., Stack],
) -> None:
    make_stack(start_worker=False, STT_BROKER_URL=_dead_broker())
    with pytest.raises(EnqueueError) as broker:
        transcribe(AUDIO)
    assert isinstance(broker.value, TransientError)
    assert broker.value.setting == "STT_BROKER_URL" and broker.value.job_id
    make_stack(start_worker=False, STT_DATABASE_URL=_dead_database())
    with pytest.raises(EnqueueError) as database:
        transcribe(AUDIO)
    assert database.value.setting == "STT_DATABASE_URL" and database.value.job_id is None


def test_the_flask_example_answers_503_when_it_cannot_enqueue(
    make_stack: Callable[..., Stack],
) -> None:
    make_stack(start_worker=False, STT_BROKER_URL=_dead_broker())
    add_example_path("flask_app")
    from stt_flask import create_app

    response = create_app({"TESTING": True}).test_client().post("/jobs", json={"url": AUDIO})
    assert response.status_code == 503, response.data
    assert response.headers["Retry-After"]
    assert "could not enqueue" in response.get_json()["error"]
