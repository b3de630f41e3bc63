"""The command line: bad flags fail fast with a message; a taken port is a clean error."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest
import requests

from tests.fixtures.emulator import REPO_ROOT, EmulatorHandle
from workers.emulator.cli import main


@pytest.mark.parametrize(
    "argv",
    [
        ["--fault", "rate_503"],
        ["--fault", "rate_503=2"],
        ["--fault", "teapot=1"],
        ["--fault-get", "latency_ms=800-200"],
        ["--dialect", "v9"],
        ["--retention", "0"],
        ["--model", "acme/x"],
        ["--model", "acme/x=acme"],
    ],
)
def test_bad_flags_exit_2_naming_the_problem(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_a_taken_port_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port)]) == 1
    assert f"cannot serve on 127.0.0.1:{port}" in capsys.readouterr().err


def test_module_entry_point_serves_and_stops_on_sigterm(
    emulator_factory: Callable[..., EmulatorHandle],
) -> None:
    emu = emulator_factory("--seed", "3")
    assert requests.get(f"{emu.base_url}/_emulator/health", timeout=10).json()["ok"] is True
    emu.process.terminate()
    assert emu.process.wait(timeout=10) == 0


def test_help_lists_the_flags() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "workers.emulator", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in ("--port", "--api-key", "--retention", "--speed", "--fixed", "--queue-delay",
                 "--dialect", "--seed", "--fault", "--fault-create", "--fault-get",
                 "--model"):  # fmt: skip
        assert flag in out


def test_model_flag_serves_a_model_the_documented_list_lacks(
    emulator_factory: Callable[..., EmulatorHandle],
) -> None:
    emu = emulator_factory("--model", "#g1_nova-4-general=deepgram", "--fixed", "0")
    assert emu.config()["models"] == {"#g1_nova-4-general": "deepgram"}
    created = emu.create("https://example.com/n.mp3", "#g1_nova-4-general")
    assert created.status_code == 201, created.text
    result = emu.wait(created.json()["generation_id"])["result"]
    assert "alternatives" in result["results"]["channels"]  # Deepgram's shape


def test_a_hung_request_does_not_hold_up_a_stop(
    emulator_factory: Callable[..., EmulatorHandle],
) -> None:
    emu = emulator_factory("--fault", "rate_hang=1", "--fault", "hang_seconds=60")
    errors: list[Exception] = []

    def hang() -> None:
        try:
            emu.create("https://example.com/a.mp3")
        except requests.RequestException as exc:
            errors.append(exc)

    client = threading.Thread(target=hang)
    client.start()
    time.sleep(0.5)
    started = time.monotonic()
    emu.process.terminate()
    assert emu.process.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    client.join(timeout=10)
    assert errors  # the hung client saw its connection close, not an answer
