"""The dialect switch: status words and envelope variants the vendor's pages show."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.contract.schema import RESULT_BRANCH, get_response_schema, validate
from tests.fixtures.emulator import EmulatorHandle

PENDING = {
    "classic": ["queued", "generating"],
    "waiting": ["waiting", "active"],
    "v2": ["waiting", "active"],
    "v2-queued": ["queued", "generating"],
}


def lifecycle(emulator: EmulatorHandle, url: str, id_key: str) -> list[dict[str, Any]]:
    created = emulator.create(url)
    assert created.status_code == 201
    generation_id = created.json()[id_key]
    bodies: list[dict[str, Any]] = []
    for _ in range(200):
        body = emulator.poll(generation_id).json()
        if not bodies or bodies[-1]["status"] != body["status"]:
            bodies.append(body)
        if body["status"] in ("completed", "error"):
            return bodies
        time.sleep(0.02)
    raise AssertionError(bodies)


@pytest.mark.parametrize("dialect", sorted(PENDING))
def test_each_dialect_at_run_time(emulator: EmulatorHandle, dialect: str) -> None:
    emulator.configure(dialect=dialect)
    new = dialect.startswith("v2")
    id_key = "id" if new else "generation_id"
    created = emulator.create("https://example.com/a.mp3").json()
    assert set(created) == {id_key, "status"}
    assert created["status"] == PENDING[dialect][0]

    bodies = lifecycle(emulator, "https://example.com/a.mp3", id_key)
    for body in bodies:
        validate(body, get_response_schema(dialect))
    assert [b["status"] for b in bodies] == [*PENDING[dialect], "completed"]
    result = bodies[-1]["output" if new else "result"]
    validate(result, RESULT_BRANCH["openai"])

    failed = lifecycle(emulator, "https://example.com/force-error.mp3", id_key)[-1]
    validate(failed, get_response_schema(dialect))
    if new:
        assert failed["error"]["name"] and "force-error" in failed["error"]["message"]
    else:
        assert "force-error" in failed["error"]


def test_non_classic_bodies_break_the_contract_schema(emulator: EmulatorHandle) -> None:
    """The variants really differ: a client written only for the contract would choke."""
    emulator.configure(dialect="waiting")
    body = lifecycle(emulator, "https://example.com/a.mp3", "generation_id")[0]
    with pytest.raises(AssertionError):
        validate(body, get_response_schema("classic"))


def test_dialect_flag(emulator_factory: Callable[..., EmulatorHandle]) -> None:
    emu = emulator_factory("--dialect", "v2", "--fixed", "0", "--queue-delay", "0.5")
    generation_id = emu.create("https://example.com/a.mp3").json()["id"]
    assert emu.poll(generation_id).json() == {
        "id": generation_id,
        "status": "waiting",
        "output": None,
        "error": None,
    }


def test_a_dialect_switch_applies_to_existing_jobs(emulator: EmulatorHandle) -> None:
    emulator.configure(fixed=0.0, queue_delay=0.0)
    generation_id = emulator.create("https://example.com/a.mp3").json()["generation_id"]
    assert "result" in emulator.poll(generation_id).json()
    emulator.configure(dialect="v2")
    assert "output" in emulator.poll(generation_id).json()


def test_unknown_dialect_is_refused(emulator: EmulatorHandle) -> None:
    response = requests.post(
        f"{emulator.base_url}/_emulator/config", json={"dialect": "v3"}, timeout=10
    )
    assert response.status_code == 400
    assert emulator.config()["dialect"] == "classic"
