"""Fault injection: each fault really happens, seeded, per endpoint; per-URL forcing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
import requests

from tests.contract.schema import ERROR_ENVELOPE, validate
from tests.fixtures.emulator import EmulatorHandle

URL = "https://example.com/a.mp3"


def created_id(emulator: EmulatorHandle) -> str:
    response = emulator.create(URL)
    assert response.status_code == 201, response.text
    return str(response.json()["generation_id"])


@pytest.mark.parametrize("endpoint", ["create", "get"])
def test_429_with_retry_after(emulator: EmulatorHandle, endpoint: str) -> None:
    generation_id = created_id(emulator)
    emulator.configure(**{f"faults_{endpoint}": {"rate_429": 1, "retry_after": 7}})
    response = emulator.create(URL) if endpoint == "create" else emulator.poll(generation_id)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    validate(response.json(), ERROR_ENVELOPE)


def test_429_without_retry_after(emulator: EmulatorHandle) -> None:
    emulator.configure(faults={"rate_429_no_retry_after": 1})
    response = emulator.create(URL)
    assert response.status_code == 429
    assert "Retry-After" not in response.headers


def test_500_is_a_json_envelope(emulator: EmulatorHandle) -> None:
    emulator.configure(faults={"rate_500": 1})
    response = emulator.create(URL)
    assert response.status_code == 500
    validate(response.json(), ERROR_ENVELOPE)


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_html(emulator: EmulatorHandle, status: int) -> None:
    generation_id = created_id(emulator)
    emulator.configure(faults={f"rate_{status}": 1})
    response = emulator.poll(generation_id)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("text/html")
    assert f"<title>{status} " in response.text


def test_refusing_faults_create_no_job(emulator: EmulatorHandle) -> None:
    emulator.configure(
        faults={"rate_429": 0.25, "rate_500": 0.25, "rate_502": 0.25, "rate_503": 0.25}
    )
    for _ in range(5):
        assert emulator.create(URL).status_code in (429, 500, 502, 503)
    assert emulator.create_counts() == {}
    assert emulator.jobs() == []


@pytest.mark.parametrize("fault", ["rate_504", "rate_drop", "rate_malformed"])
def test_losing_faults_on_create_still_create_the_job(emulator: EmulatorHandle, fault: str) -> None:
    emulator.configure(faults_create={fault: 1})
    if fault == "rate_drop":
        with pytest.raises(requests.ConnectionError):
            emulator.create(URL)
    else:
        response = emulator.create(URL)
        with pytest.raises(ValueError):
            response.json()  # the 504 HTML page, or a body cut off mid-JSON
    assert emulator.create_counts() == {URL: 1}


def test_malformed_body_is_a_201_that_does_not_parse(emulator: EmulatorHandle) -> None:
    generation_id = created_id(emulator)
    emulator.configure(faults_get={"rate_malformed": 1})
    response = emulator.poll(generation_id)
    assert response.status_code == 201
    assert response.headers["Content-Type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


def test_dropped_connection(emulator: EmulatorHandle) -> None:
    generation_id = created_id(emulator)
    emulator.configure(faults_get={"rate_drop": 1})
    with pytest.raises(requests.ConnectionError):
        emulator.poll(generation_id)
    assert emulator.stats()["by_status"]["get drop"] == 1


def test_hang_outlasts_a_client_timeout(emulator: EmulatorHandle) -> None:
    emulator.configure(faults_create={"rate_hang": 1, "hang_seconds": 3})
    body = {"model": "aai/best", "url": URL}
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        requests.post(
            f"{emulator.api_base}/stt/create", json=body, headers=emulator.headers, timeout=0.5
        )
    assert time.monotonic() - started < 2
    assert emulator.create_counts() == {URL: 1}  # the server did the work; the answer was late


def test_hang_answers_eventually(emulator: EmulatorHandle) -> None:
    emulator.configure(faults_create={"rate_hang": 1, "hang_seconds": 0.6})
    started = time.monotonic()
    assert emulator.create(URL).status_code == 201
    assert time.monotonic() - started >= 0.6


def test_fixed_latency(emulator: EmulatorHandle) -> None:
    emulator.configure(faults={"latency_ms": 300})
    started = time.monotonic()
    assert emulator.create(URL).status_code == 201
    assert 0.3 <= time.monotonic() - started < 0.6


def test_uniform_latency_range(emulator: EmulatorHandle) -> None:
    generation_id = created_id(emulator)
    emulator.configure(faults_get={"latency_ms": "100-250"})
    elapsed = []
    for _ in range(6):
        started = time.monotonic()
        emulator.poll(generation_id)
        elapsed.append(time.monotonic() - started)
    assert all(0.1 <= e < 0.35 for e in elapsed), elapsed
    assert max(elapsed) - min(elapsed) > 0.01  # a range, not a constant


def test_job_errors(emulator: EmulatorHandle) -> None:
    emulator.configure(faults={"rate_job_error": 1, "job_error_message": "model overloaded"})
    body = emulator.wait(created_id(emulator))
    assert body["status"] == "error"
    assert body["error"] == "model overloaded"
    assert body["result"] is None


def test_faults_are_scoped_per_endpoint(emulator: EmulatorHandle) -> None:
    emulator.configure(faults_get={"rate_503": 1})
    generation_id = created_id(emulator)
    assert emulator.poll(generation_id).status_code == 503


def test_fault_shares_are_roughly_honoured(emulator: EmulatorHandle) -> None:
    generation_id = created_id(emulator)
    emulator.configure(faults_get={"rate_503": 0.3})
    codes = [emulator.poll(generation_id).status_code for _ in range(200)]
    assert 35 <= codes.count(503) <= 85
    assert codes.count(503) + codes.count(201) == 200


def test_same_seed_same_faults(emulator: EmulatorHandle) -> None:
    def sequence(seed: int) -> list[int]:
        emulator.reset()
        emulator.configure(seed=seed, faults={"rate_503": 0.3, "rate_429": 0.2})
        return [emulator.create(URL).status_code for _ in range(30)]

    first = sequence(7)
    assert sequence(7) == first
    assert sequence(8) != first
    assert {201, 429, 503} == set(first)


def test_fault_cli_flags(emulator_factory: Callable[..., EmulatorHandle]) -> None:
    emu = emulator_factory("--fault-get", "rate_500=1", "--fault", "latency_ms=200-200")
    started = time.monotonic()
    response = emu.create(URL)
    assert response.status_code == 201  # --fault-get replaces --fault for polls only
    assert time.monotonic() - started >= 0.2
    assert emu.poll(response.json()["generation_id"]).status_code == 500
    assert emu.config()["faults_get"]["rate_500"] == 1.0


def test_forced_create_status_for_the_first_n_calls(emulator: EmulatorHandle) -> None:
    url = "https://example.com/force-http-503x2/a.mp3"
    statuses = [emulator.create(url).status_code for _ in range(3)]
    assert statuses == [503, 503, 201]
    assert emulator.create_calls() == {url: 3}
    assert emulator.create_counts() == {url: 1}


def test_forced_create_status_always(emulator: EmulatorHandle) -> None:
    url = "https://example.com/a.mp3?force-http-429"
    responses = [emulator.create(url) for _ in range(3)]
    assert [r.status_code for r in responses] == [429, 429, 429]
    assert responses[0].headers["Retry-After"] == "1"


def test_forced_poll_status(emulator: EmulatorHandle) -> None:
    generation_id = emulator.create("https://example.com/force-poll-404x1/a.mp3").json()[
        "generation_id"
    ]
    first = emulator.poll(generation_id)
    assert first.status_code == 404
    validate(first.json(), ERROR_ENVELOPE)
    assert emulator.poll(generation_id).status_code == 201


def test_bad_fault_settings_are_refused(emulator: EmulatorHandle) -> None:
    url = f"{emulator.base_url}/_emulator/config"
    for faults in ({"rate_503": 1.5}, {"rate_503": 0.6, "rate_500": 0.6}, {"rate_teapot": 1}):
        response = requests.post(url, json={"faults": faults}, timeout=10)
        assert response.status_code == 400, faults
        assert response.json()["error"]
    assert emulator.config()["faults"]["rate_503"] == 0.0
