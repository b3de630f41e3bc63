"""Bearer auth: only the configured keys get in, and a refused call changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from tests.contract.schema import ERROR_ENVELOPE, validate
from tests.fixtures.emulator import EmulatorHandle

BODY = {"model": "openai/gpt-4o-mini-transcribe", "url": "https://example.com/a.mp3"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "sk-emulator-key"}],
    ids=["missing", "wrong-key", "no-scheme"],
)
def test_create_without_a_valid_key_is_401(
    emulator: EmulatorHandle, headers: dict[str, str]
) -> None:
    response = requests.post(
        f"{emulator.api_base}/stt/create", json=BODY, headers=headers, timeout=10
    )
    assert response.status_code == 401
    body = response.json()
    validate(body, ERROR_ENVELOPE)
    assert body["message"] == "Unauthorized"
    assert emulator.create_counts() == {}
    assert emulator.jobs() == []


def test_poll_without_a_valid_key_is_401_and_not_counted(emulator: EmulatorHandle) -> None:
    generation_id = emulator.create(BODY["url"]).json()["generation_id"]
    response = requests.get(
        f"{emulator.api_base}/stt/{generation_id}",
        headers={"Authorization": "Bearer nope"},
        timeout=10,
    )
    assert response.status_code == 401
    validate(response.json(), ERROR_ENVELOPE)
    assert emulator.job(generation_id)["polls"] == 0


def test_the_bearer_scheme_is_case_insensitive(emulator: EmulatorHandle) -> None:
    response = requests.post(
        f"{emulator.api_base}/stt/create",
        json=BODY,
        headers={"Authorization": f"bearer {emulator.api_key}"},
        timeout=10,
    )
    assert response.status_code == 201


def test_api_key_flag_is_repeatable_and_replaces_the_default(
    emulator_factory: Callable[..., EmulatorHandle],
) -> None:
    emu = emulator_factory("--api-key", "key-one", "--api-key", "key-two")
    url = f"{emu.api_base}/stt/create"
    for key, status in (("key-one", 201), ("key-two", 201), ("sk-emulator-key", 401)):
        headers = {"Authorization": f"Bearer {key}"}
        assert requests.post(url, json=BODY, headers=headers, timeout=10).status_code == status


def test_keys_can_change_at_run_time(emulator: EmulatorHandle) -> None:
    emulator.configure(api_keys=["rotated"])
    assert emulator.create(BODY["url"]).status_code == 401
    response = requests.post(
        f"{emulator.api_base}/stt/create",
        json=BODY,
        headers={"Authorization": "Bearer rotated"},
        timeout=10,
    )
    assert response.status_code == 201
