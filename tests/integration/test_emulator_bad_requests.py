"""A request the emulator cannot parse gets a 4xx in the vendor's envelope, never a 5xx.

Wrong or missing content type, multipart without a boundary or with a broken body, invalid
JSON, null where the contract wants a value, a body over the limit, a wrong method: each is
the caller's mistake, so each is a 4xx (a 500 would tell our client to retry it). Only
fault injection answers 5xx (the last test).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.fixtures.emulator import EmulatorHandle
from tests.integration.test_emulator_contract import assert_error

CREATE = "/v1/stt/create"
VALID = b'{"model": "openai/gpt-4o-mini-transcribe", "url": "https://audio.example.com/a.mp3"}'
PART = b'--xx\r\nContent-Disposition: form-data; name="model"\r\n\r\n'

# (content type or None, body) -> the status the vendor's parser would answer
BAD_BODIES: dict[str, tuple[str | None, bytes, int]] = {
    "multipart without boundary": ("multipart/form-data", VALID, 400),
    "multipart, garbage body": ("multipart/form-data; boundary=xx", b"garbage", 400),
    "multipart, cut off": ("multipart/form-data; boundary=xx", PART + b"openai/", 400),
    "multipart, empty boundary": ("multipart/form-data; boundary=", VALID, 400),
    "invalid JSON": ("application/json", b'{"model": ', 400),
    "JSON not an object": ("application/json", b"[1, 2]", 400),
    "not UTF-8": ("application/json", b"\xff\xfe{}", 400),
    "text/plain": ("text/plain", b"hello", 400),
    "form-urlencoded": ("application/x-www-form-urlencoded", b"model=x&url=y", 400),
    "no content type": (None, b"hello", 400),
    "no body": ("application/json", b"", 400),
    "temperature null": (
        "application/json",
        b'{"model": "openai/gpt-4o-mini-transcribe", "url": "https://a.example/x.mp3",'
        b' "temperature": null}',
        400,
    ),
    "language null": (
        "application/json",
        b'{"model": "openai/gpt-4o-mini-transcribe", "url": "https://a.example/x.mp3",'
        b' "language": null}',
        400,
    ),
}


def post_raw(emulator: EmulatorHandle, content_type: str | None, body: bytes) -> requests.Response:
    headers = dict(emulator.headers)
    if content_type is not None:
        headers["Content-Type"] = content_type
    request = requests.Request("POST", emulator.base_url + CREATE, headers=headers, data=body)
    prepared = request.prepare()
    if content_type is None:
        prepared.headers.pop("Content-Type", None)
    with requests.Session() as session:
        return session.send(prepared, timeout=10)


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_unparseable_create_is_a_4xx_in_the_vendor_envelope(
    emulator: EmulatorHandle, case: str
) -> None:
    content_type, body, status = BAD_BODIES[case]
    response = post_raw(emulator, content_type, body)
    assert_error(response, status, CREATE)
    assert emulator.create_counts() == {}  # nothing was created


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "TRACE"])
def test_wrong_method_is_a_404_as_the_vendor_answers(emulator: EmulatorHandle, method: str) -> None:
    response = requests.request(
        method, emulator.base_url + CREATE, headers=emulator.headers, timeout=10
    )
    body = assert_error(response, 404, CREATE)
    assert body["message"] == f"Cannot {method} {CREATE}"


def test_body_over_the_limit_is_a_413(emulator_factory: Callable[..., EmulatorHandle]) -> None:
    emulator = emulator_factory("--max-body-mb", "1")
    padding = "x" * (1024 * 1024)
    body: dict[str, Any] = {"model": "openai/gpt-4o-mini-transcribe", "url": "https://a.b/c"}
    response = emulator.create(body["url"], prompt=padding)
    assert_error(response, 413, CREATE)
    # A multipart upload is held to the limit across its parts, not just per part.
    half = b"a" * (600 * 1024)
    parts = b"".join(
        b'--xx\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (name, half)
        for name in (b"prompt", b"language")
    )
    response = post_raw(emulator, "multipart/form-data; boundary=xx", parts + b"--xx--\r\n")
    assert_error(response, 413, CREATE)
    # Under the limit, the same emulator creates the job.
    assert emulator.create(body["url"], prompt="short").status_code == 201


def test_only_fault_injection_answers_5xx(emulator: EmulatorHandle) -> None:
    emulator.configure(faults={"rate_500": 1.0})
    response = post_raw(emulator, "multipart/form-data", VALID)
    assert response.status_code == 500
