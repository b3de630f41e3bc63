"""The callback signature scheme, its backoff and its settings, as pure functions."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.errors import ConfigurationError
from tasks.polling import CALLBACK_MAX_DELAY, callback_retry_delay
from tasks.settings import Settings
from tasks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, signature, verify_signature

SECRET = "unit-test-secret-0123456789"
NOW = 1_700_000_000


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body_as_documented() -> None:
    body = b'{"id":"abc","status":"completed"}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, body, timestamp=NOW) == {
        TIMESTAMP_HEADER: "1700000000",
        SIGNATURE_HEADER: f"sha256={expected}",
    }


@given(body=st.binary(max_size=2000), skew=st.integers(-300, 300))
def test_any_body_signed_within_the_tolerance_verifies(body: bytes, skew: int) -> None:
    headers = sign(SECRET, body, timestamp=NOW)
    assert verify_signature(SECRET, body, headers, now=NOW + skew)
    assert verify_signature(SECRET.encode(), body, headers, now=NOW + skew)


@given(body=st.binary(min_size=1, max_size=500), flip=st.integers(0, 499))
def test_any_changed_byte_fails(body: bytes, flip: int) -> None:
    headers = sign(SECRET, body, timestamp=NOW)
    index = flip % len(body)
    tampered = body[:index] + bytes([body[index] ^ 1]) + body[index + 1 :]
    assert not verify_signature(SECRET, tampered, headers, now=NOW)


def test_header_names_are_case_insensitive() -> None:
    headers = {k.lower(): v for k, v in sign(SECRET, b"{}", timestamp=NOW).items()}
    assert verify_signature(SECRET, b"{}", headers, now=NOW)


@pytest.mark.parametrize(
    "headers",
    [
        {},  # nothing
        {TIMESTAMP_HEADER: str(NOW)},  # no signature
        {SIGNATURE_HEADER: signature(SECRET, b"{}", NOW)},  # no timestamp
        {TIMESTAMP_HEADER: "yesterday", SIGNATURE_HEADER: signature(SECRET, b"{}", NOW)},
        {TIMESTAMP_HEADER: "-1", SIGNATURE_HEADER: signature(SECRET, b"{}", -1)},
        {TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: "sha256=" + "0" * 64},
        {TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: signature(SECRET, b"{}", NOW)[7:]},
        {
            TIMESTAMP_HEADER: str(NOW),
            SIGNATURE_HEADER: signature("other-secret-000000", b"{}", NOW),
        },
        # A valid signature replayed with a fresh timestamp: the timestamp is signed.
        {TIMESTAMP_HEADER: str(NOW + 1), SIGNATURE_HEADER: signature(SECRET, b"{}", NOW)},
        # Replayed too late, or stamped too far ahead.
        {TIMESTAMP_HEADER: str(NOW - 301), SIGNATURE_HEADER: signature(SECRET, b"{}", NOW - 301)},
        {TIMESTAMP_HEADER: str(NOW + 301), SIGNATURE_HEADER: signature(SECRET, b"{}", NOW + 301)},
    ],
)
def test_missing_malformed_forged_or_stale_headers_fail(headers: dict[str, str]) -> None:
    assert not verify_signature(SECRET, b"{}", headers, now=NOW)


def test_the_tolerance_is_adjustable() -> None:
    headers = sign(SECRET, b"{}", timestamp=NOW - 3600)
    assert not verify_signature(SECRET, b"{}", headers, now=NOW)
    assert verify_signature(SECRET, b"{}", headers, now=NOW, tolerance=3600)


@given(attempt=st.integers(1, 10_000), r=st.floats(0, 1))
def test_callback_backoff_is_bounded_and_never_zero(attempt: int, r: float) -> None:
    delay = callback_retry_delay(attempt, rand=lambda: r)
    ceiling = min(CALLBACK_MAX_DELAY, 2.0 * 2.0 ** min(attempt - 1, 100))
    assert ceiling / 2 <= delay <= ceiling


def test_callback_backoff_doubles_and_honours_retry_after() -> None:
    assert [callback_retry_delay(a, rand=lambda: 1.0) for a in range(1, 11)] == [
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        256,
        300,
        300,
    ]
    assert callback_retry_delay(1, retry_after=30, rand=lambda: 0.0) == 30
    assert callback_retry_delay(1, retry_after=10_000, rand=lambda: 0.0) == 300
    with pytest.raises(ValueError, match="attempt"):
        callback_retry_delay(0)


def test_callback_settings_are_read_validated_and_never_shown() -> None:
    settings = Settings.from_env(
        {
            "STT_CALLBACK_SECRET": SECRET,
            "STT_CALLBACK_MAX_ATTEMPTS": "3",
            "STT_CALLBACK_TIMEOUT": "2.5",
        }
    )
    assert (settings.callback_max_attempts, settings.callback_timeout) == (3, 2.5)
    assert settings.require_callback_secret() == SECRET
    assert SECRET not in repr(settings)
    with pytest.raises(ConfigurationError, match="STT_CALLBACK_SECRET"):
        Settings.from_env({"STT_CALLBACK_SECRET": "short"})
    with pytest.raises(ConfigurationError, match="STT_CALLBACK_MAX_ATTEMPTS"):
        Settings.from_env({"STT_CALLBACK_MAX_ATTEMPTS": "0"})
    with pytest.raises(ConfigurationError, match="STT_CALLBACK_SECRET"):
        Settings.from_env({}).require_callback_secret()
