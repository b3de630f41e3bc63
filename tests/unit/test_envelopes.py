"""parse_generation: both envelopes the vendor uses, error forms, status words, bad input."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.envelopes import MAX_MESSAGE_CHARS, parse_generation
from tasks.errors import PermanentError
from tasks.models import Generation, Phase

OPENAI_RESULT = {
    "text": "He doesn't belong to you.",
    "usage": {"type": "tokens", "input_tokens": 100, "output_tokens": 37, "total_tokens": 137},
}


def test_legacy_envelope_queued() -> None:
    # The doc's first answer, verbatim.
    generation = parse_generation({"generation_id": "dzIgQQyw8KCfoI5clcbHZ", "status": "queued"})
    assert generation == Generation("dzIgQQyw8KCfoI5clcbHZ", "queued")
    assert generation.phase is Phase.PENDING
    assert generation.known_status


def test_legacy_envelope_completed_with_result() -> None:
    body = {"generation_id": "g-1", "status": "completed", "result": OPENAI_RESULT, "error": None}
    generation = parse_generation(body, request_id="req-1")
    assert generation.generation_id == "g-1"
    assert generation.phase is Phase.COMPLETED
    assert generation.result == OPENAI_RESULT
    assert generation.error is None
    assert generation.request_id == "req-1"


def test_newer_envelope_with_output_and_error_object() -> None:
    body = {
        "id": "g-2",
        "status": "error",
        "output": None,
        "error": {"name": "AudioDownloadError", "message": "could not fetch the audio"},
    }
    generation = parse_generation(body)
    assert generation.generation_id == "g-2"
    assert generation.phase is Phase.ERROR
    assert generation.result is None
    assert generation.error == "AudioDownloadError: could not fetch the audio"


def test_newer_envelope_completed() -> None:
    generation = parse_generation({"id": "g-3", "status": "completed", "output": OPENAI_RESULT})
    assert generation.result == OPENAI_RESULT
    assert generation.phase is Phase.COMPLETED


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (None, None),
        ("", None),
        ("File too large", "File too large"),
        ({"message": "only a message"}, "only a message"),
        ({"name": "OnlyAName"}, "OnlyAName"),
        ({"name": "N", "message": "M"}, "N: M"),
        ({"code": 7}, '{"code": 7}'),
        (["a", "b"], '["a", "b"]'),
        ("line one\nline two", "line one line two"),
    ],
)
def test_error_forms(error: Any, expected: str | None) -> None:
    body = {"generation_id": "g", "status": "error", "error": error}
    assert parse_generation(body).error == expected


def test_long_error_is_truncated() -> None:
    generation = parse_generation({"id": "g", "status": "error", "error": "e" * 10_000})
    assert generation.error is not None
    assert len(generation.error) == MAX_MESSAGE_CHARS


@pytest.mark.parametrize("status", ["waiting", "active", "processing", "generating", "queued"])
def test_known_pending_words(status: str) -> None:
    generation = parse_generation({"generation_id": "g", "status": status})
    assert generation.phase is Phase.PENDING
    assert generation.known_status


@pytest.mark.parametrize("status", ["transcoding", "COMPLETED", "Done", "  queued "])
def test_unknown_status_kept_verbatim_and_pending(status: str) -> None:
    generation = parse_generation({"generation_id": "g", "status": status})
    assert generation.status == status
    assert generation.phase is Phase.PENDING
    assert not generation.known_status


def test_failed_is_an_error_word() -> None:
    assert parse_generation({"id": "g", "status": "failed"}).phase is Phase.ERROR


def test_create_answer_without_status_uses_the_default() -> None:
    # The create schema requires only generation_id.
    generation = parse_generation({"generation_id": "g-9"}, default_status="queued")
    assert generation.status == "queued"
    with pytest.raises(PermanentError, match="status"):
        parse_generation({"generation_id": "g-9"})


def test_result_wins_over_output_when_both_present() -> None:
    body = {"id": "g", "status": "completed", "result": {"text": "a"}, "output": {"text": "b"}}
    assert parse_generation(body).result == {"text": "a"}


def test_request_id_from_body_when_none_given() -> None:
    body = {"id": "g", "status": "queued", "requestId": "body-req"}
    assert parse_generation(body).request_id == "body-req"
    assert parse_generation(body, request_id="hdr-req").request_id == "hdr-req"


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ([{"generation_id": "g", "status": "queued"}], "got list"),
        ("queued", "got str"),
        (None, "got NoneType"),
        ({"status": "queued"}, "no generation id"),
        ({"generation_id": "", "status": "queued"}, "no generation id"),
        ({"generation_id": 42, "status": "queued"}, "no generation id"),
        ({"generation_id": "g"}, "missing or non-string status"),
        ({"generation_id": "g", "status": None}, "missing or non-string status"),
        ({"generation_id": "g", "status": 3}, "missing or non-string status"),
        ({"generation_id": "g", "status": "completed", "result": "text"}, "result is a str"),
        ({"generation_id": "g", "status": "completed", "result": [1]}, "result is a list"),
        ({"id": "g", "status": "completed", "output": 5}, "result is a int"),
    ],
)
def test_malformed_envelopes_are_permanent(body: object, match: str) -> None:
    with pytest.raises(PermanentError, match=match) as info:
        parse_generation(body, request_id="req-x")
    assert info.value.request_id == "req-x"


def test_missing_id_message_names_the_keys_seen() -> None:
    with pytest.raises(PermanentError) as info:
        parse_generation({"status": "queued", "detail": "x"})
    assert "keys: detail, status" in info.value.message
