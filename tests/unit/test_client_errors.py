"""error_from_response and parse_retry_after: every status class, Retry-After, request ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from tasks.envelopes import MAX_MESSAGE_CHARS, error_from_response, parse_retry_after
from tasks.errors import PermanentError, TransientError

NOW = 1_800_000_000.0  # a fixed "now" for HTTP-date arithmetic

VENDOR_400 = {
    "message": "Body validation error!",
    "path": "/v1/stt/create",
    "requestId": "req-7f3a",
    "statusCode": 400,
    "timestamp": "2025-06-01T12:00:00.000Z",
}


def _http_date(offset: float) -> str:
    return format_datetime(datetime.fromtimestamp(NOW + offset, UTC), usegmt=True)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 507, 599])
def test_retryable_statuses_are_transient(status: int) -> None:
    error = error_from_response(status, {}, b'{"message": "busy"}')
    assert type(error) is TransientError
    assert error.status_code == status
    assert "busy" in error.message


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 405, 409, 413, 422, 451, 300, 302])
def test_other_statuses_are_permanent(status: int) -> None:
    error = error_from_response(status, {}, b'{"message": "nope"}')
    assert type(error) is PermanentError
    assert error.status_code == status


def test_vendor_envelope_gives_message_and_request_id() -> None:
    error = error_from_response(400, {}, json.dumps(VENDOR_400).encode())
    assert error.message == "rejected: Body validation error!"
    assert error.request_id == "req-7f3a"
    assert str(error) == "rejected: Body validation error! | HTTP 400 | request id req-7f3a"


def test_errors_detail_list_is_included() -> None:
    body = {
        **VENDOR_400,
        "errors": [{"path": ["url"], "message": "Invalid url"}, "temperature too high"],
    }
    error = error_from_response(400, {}, json.dumps(body))
    assert error.message == "rejected: Body validation error! (Invalid url; temperature too high)"


def test_nestjs_message_list_and_error_object() -> None:
    listed = error_from_response(400, {}, '{"message": ["url must be a URL", "model missing"]}')
    assert listed.message == "rejected: url must be a URL; model missing"
    nested = error_from_response(403, {}, '{"error": {"name": "Forbidden", "message": "no plan"}}')
    assert nested.message == "rejected: no plan"


def test_unauthorized_names_the_variable_to_check() -> None:
    error = error_from_response(401, {}, b'{"message": "Unauthorized"}')
    assert error.message == "unauthorized (check AIML_API_KEY): Unauthorized"


@pytest.mark.parametrize("header", ["x-request-id", "X-Request-Id", "request-id", "Request-ID"])
def test_request_id_from_headers(header: str) -> None:
    error = error_from_response(503, {header: "hdr-1"}, b"Service Unavailable")
    assert error.request_id == "hdr-1"


def test_request_id_in_body_wins_over_header() -> None:
    error = error_from_response(400, {"x-request-id": "hdr-1"}, json.dumps(VENDOR_400))
    assert error.request_id == "req-7f3a"


def test_no_request_id_at_all() -> None:
    assert error_from_response(500, {}, b"").request_id is None


def test_non_json_body_falls_back_to_short_text() -> None:
    html = b"<html><body><h1>502 Bad Gateway</h1>\n<hr><center>nginx</center></body></html>"
    error = error_from_response(502, {}, html)
    assert error.message.startswith("server error: <html><body><h1>502 Bad Gateway</h1> <hr>")
    assert "\n" not in error.message


def test_empty_body_is_said_so() -> None:
    assert error_from_response(503, {}, b"").message == "server error: empty body"
    assert error_from_response(404, {}, "  ").message == "rejected: empty body"


def test_huge_bodies_are_truncated() -> None:
    huge_text = b"x" * 5_000_000
    error = error_from_response(500, {}, huge_text)
    assert len(error.message) <= MAX_MESSAGE_CHARS
    assert error.message.endswith("…")
    long_message = json.dumps({"message": "y" * 10_000})
    error = error_from_response(400, {}, long_message)
    assert error.message.startswith("rejected: yyy")
    assert len(error.message) == MAX_MESSAGE_CHARS
    assert len(str(error)) < MAX_MESSAGE_CHARS + 40


def test_json_beyond_the_read_cap_falls_back_to_text() -> None:
    # Only the first 64 KiB are looked at: a bigger JSON body is not parsed, but quoted.
    error = error_from_response(400, {}, json.dumps({"message": "y" * 100_000}))
    assert error.message.startswith('rejected: {"message": "yyy')
    assert len(error.message) <= MAX_MESSAGE_CHARS


def test_undecodable_bytes_do_not_raise() -> None:
    error = error_from_response(500, {}, b"\xff\xfe\x00oops")
    assert "oops" in error.message


# --- Retry-After -----------------------------------------------------------------------


def test_retry_after_seconds() -> None:
    error = error_from_response(429, {"Retry-After": "7"}, b"")
    assert isinstance(error, TransientError)
    assert error.retry_after == 7.0


def test_retry_after_http_date() -> None:
    error = error_from_response(503, {"retry-after": _http_date(120)}, b"", now=NOW)
    assert isinstance(error, TransientError)
    assert error.retry_after == 120.0


def test_retry_after_http_date_against_the_real_clock() -> None:
    when = datetime.now(UTC) + timedelta(seconds=90)
    error = error_from_response(429, {"Retry-After": format_datetime(when, usegmt=True)}, b"")
    assert isinstance(error, TransientError)
    assert error.retry_after is not None
    assert 85 <= error.retry_after <= 90


def test_retry_after_missing_is_none() -> None:
    error = error_from_response(429, {}, b"")
    assert isinstance(error, TransientError)
    assert error.retry_after is None


def test_permanent_errors_carry_no_retry_after() -> None:
    error = error_from_response(400, {"Retry-After": "5"}, b"")
    assert not hasattr(error, "retry_after")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("  12 ", 12.0),
        ("1.5", 1.5),
        ("-3", 0.0),  # negative: clamp to "now"
        (_http_date(-60), 0.0),  # a date in the past: clamp to "now"
        (_http_date(3600), 3600.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


# --- the key never leaks -----------------------------------------------------------------


def test_mapping_has_no_way_to_see_the_key() -> None:
    # error_from_response never sees the key: the client scrubs the body before the call
    # (tests/integration/test_client_http.py shows an echoing server); here we check that
    # nothing but the body and headers reaches the message.
    error = error_from_response(401, {"WWW-Authenticate": "Bearer"}, b'{"message": "bad key"}')
    assert "Bearer" not in str(error)
