"""Every body the emulator sends validates against the contract (and the error envelope)."""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime
from typing import Any

import pytest
import requests

from tasks.catalog import MODELS
from tests.contract.schema import (
    ERROR_ENVELOPE,
    RESULT_BRANCH,
    create_response_schema,
    get_response_schema,
    validate,
)
from tests.fixtures.emulator import EmulatorHandle
from workers.emulator.audio import sample_wav

ONE_PER_FAMILY = {
    "openai": "openai/gpt-4o-mini-transcribe",
    "deepgram": "#g1_nova-2-meeting",
    "assemblyai": "aai/best",
}
ID_SHAPE = re.compile(r"^[A-Za-z0-9]{21}$")


def assert_error(response: requests.Response, status: int, path: str) -> dict[str, Any]:
    """The vendor's envelope with this status, a UUID request id and an ISO timestamp."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    validate(body, ERROR_ENVELOPE)
    assert body["statusCode"] == status
    assert body["path"] == path
    uuid.UUID(body["requestId"])
    assert response.headers["x-request-id"] == body["requestId"]
    datetime.fromisoformat(body["timestamp"])
    return body


def poll_all_states(emulator: EmulatorHandle, generation_id: str) -> list[dict[str, Any]]:
    """Every poll answer until the job is final, checking each against the contract."""
    bodies = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        response = emulator.poll(generation_id)
        assert response.status_code == 201  # the documented quirk: GET answers 201
        body = response.json()
        validate(body, get_response_schema("classic"))
        assert set(body) == {"generation_id", "status", "result", "error"}
        bodies.append(body)
        if body["status"] in ("completed", "error"):
            return bodies
        time.sleep(0.03)
    raise AssertionError(f"never finished: {bodies[-1]}")


@pytest.mark.parametrize("family", sorted(ONE_PER_FAMILY))
def test_lifecycle_bodies_validate(emulator: EmulatorHandle, family: str) -> None:
    url = emulator.sample_url(3)
    created = emulator.create(url, ONE_PER_FAMILY[family], language="en", temperature=0.2)
    assert created.status_code == 201
    body = created.json()
    validate(body, create_response_schema())
    assert body["status"] == "queued"
    assert ID_SHAPE.match(body["generation_id"]), body["generation_id"]

    bodies = poll_all_states(emulator, body["generation_id"])
    statuses = [b["status"] for b in bodies]
    assert statuses[0] == "queued" and statuses[-1] == "completed"
    assert all(b["result"] is None and b["error"] is None for b in bodies[:-1])
    result = bodies[-1]["result"]
    validate(result, RESULT_BRANCH[family])
    others = [f for f in RESULT_BRANCH if f != family]
    for other in others:  # the shapes are distinguishable, so a client can tell them apart
        with pytest.raises(AssertionError):
            validate(result, RESULT_BRANCH[other])


def test_every_catalog_model_completes_in_its_familys_shape(emulator: EmulatorHandle) -> None:
    emulator.configure(fixed=0.0, queue_delay=0.0)
    ids = {}
    for model in MODELS:
        response = emulator.create(f"https://example.com/{model}.mp3", model)
        assert response.status_code == 201, (model, response.text)
        ids[model] = response.json()["generation_id"]
    for model, generation_id in ids.items():
        body = emulator.wait(generation_id)
        validate(body, get_response_schema("classic"))
        validate(body["result"], RESULT_BRANCH[MODELS[model].family.value])


def test_assemblyai_speech_model_only_when_the_contract_enum_names_it(
    emulator: EmulatorHandle,
) -> None:
    emulator.configure(fixed=0.0, queue_delay=0.0)
    best = emulator.create("https://example.com/a.mp3", "aai/best").json()["generation_id"]
    nano = emulator.create("https://example.com/a.mp3", "aai/nano").json()["generation_id"]
    assert emulator.wait(best)["result"]["speech_model"] == "best"
    assert "speech_model" not in emulator.wait(nano)["result"]


def test_multipart_upload_bodies_validate(emulator: EmulatorHandle) -> None:
    response = requests.post(
        f"{emulator.api_base}/stt/create",
        headers=emulator.headers,
        data={"model": "#g1_whisper-large", "language": "en"},
        files={"audio": ("clip.wav", sample_wav(2.0), "audio/wav")},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    validate(response.json(), create_response_schema())
    final = poll_all_states(emulator, response.json()["generation_id"])[-1]
    validate(final["result"], RESULT_BRANCH["deepgram"])
    assert final["result"]["metadata"]["duration"] == 2.0


def test_error_status_body_validates(emulator: EmulatorHandle) -> None:
    created = emulator.create("https://example.com/force-error.mp3")
    final = poll_all_states(emulator, created.json()["generation_id"])[-1]
    assert final["status"] == "error"
    assert final["result"] is None
    assert "force-error" in final["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://example.com/a.mp3"}, "model"),
        ({"model": "openai/whisper-9", "url": "https://example.com/a.mp3"}, "model"),
        ({"model": "aai/best"}, "url"),
        ({"model": "aai/best", "url": "ftp://example.com/a.mp3"}, "url"),
        ({"model": "aai/best", "url": "not a url"}, "url"),
        (
            {"model": "aai/best", "url": "https://example.com/a.mp3", "temperature": 1.5},
            "temperature",
        ),
        (
            {"model": "aai/best", "url": "https://example.com/a.mp3", "temperature": -0.1},
            "temperature",
        ),
        (
            {"model": "aai/best", "url": "https://example.com/a.mp3", "temperature": "hot"},
            "temperature",
        ),
        (
            {"model": "aai/best", "url": "https://example.com/a.mp3", "temperature": True},
            "temperature",
        ),
        ({"model": "aai/best", "url": "https://example.com/a.mp3", "language": 7}, "language"),
    ],
)
def test_body_validation_errors(emulator: EmulatorHandle, body: dict[str, Any], field: str) -> None:
    response = requests.post(
        f"{emulator.api_base}/stt/create", json=body, headers=emulator.headers, timeout=10
    )
    error = assert_error(response, 400, "/v1/stt/create")
    assert error["message"] == "Body validation error!"
    assert field in {e["field"] for e in error["errors"]}
    assert emulator.create_counts() == {}


def test_non_json_body_is_a_validation_error(emulator: EmulatorHandle) -> None:
    response = requests.post(
        f"{emulator.api_base}/stt/create",
        data=b"{not json",
        headers={**emulator.headers, "Content-Type": "application/json"},
        timeout=10,
    )
    assert_error(response, 400, "/v1/stt/create")


def test_temperature_bounds_are_inclusive(emulator: EmulatorHandle) -> None:
    for temperature in (0, 1, 0.5):
        response = emulator.create("https://example.com/a.mp3", temperature=temperature)
        assert response.status_code == 201, response.text


def test_unknown_generation_is_404_in_the_envelope(emulator: EmulatorHandle) -> None:
    assert_error(emulator.poll("dzIgQQyw8KCfoI5clcbHZ"), 404, "/v1/stt/dzIgQQyw8KCfoI5clcbHZ")


def test_unknown_route_is_404_in_the_envelope(emulator: EmulatorHandle) -> None:
    response = requests.get(f"{emulator.base_url}/v1/tts/x", headers=emulator.headers, timeout=10)
    assert assert_error(response, 404, "/v1/tts/x")["message"] == "Cannot GET /v1/tts/x"
