"""tasks.redact for text from outside: the key in any echoed form, control characters."""

from __future__ import annotations

import json
import logging

from hypothesis import given
from hypothesis import strategies as st

from tasks.redact import ControlCharFilter, json_safe, neutralize, scrub_json, scrub_secret

KEY = "sk-live/AbC+def/123"
_keys = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=8, max_size=40
)


@given(_keys, st.text(max_size=50), st.text(max_size=50))
def test_a_key_echoed_through_any_json_encoder_is_scrubbed_after_decoding(
    key: str, before: str, after: str
) -> None:
    for raw in (
        json.dumps({"m": before + key + after}),
        json.dumps({"m": before + key + after}).replace("/", "\\/"),
        json.dumps({"m": before + key + after}, ensure_ascii=True),
    ):
        decoded = scrub_json(json.loads(raw), key)
        assert key not in json.dumps(decoded, ensure_ascii=False)


def test_escaped_forms_in_undecoded_text_are_scrubbed_too() -> None:
    for form in (KEY, KEY.replace("/", "\\/"), KEY.replace("/", "\\u002f")):
        assert scrub_secret(f"Bearer {form}!", KEY) == "Bearer ***!"


@given(st.text())
def test_neutralized_text_has_no_control_characters(text: str) -> None:
    shown = neutralize(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in shown)
    kept = neutralize(text, keep_lines=True)
    assert "\r" not in kept and "\x1b" not in kept
    assert kept.count("\n") == text.count("\n")


def test_escapes_are_visible_and_json_stays_valid() -> None:
    assert neutralize("a\x1b[2Jb\r\n\u202e") == "a\\x1b[2Jb\\x0d\\x0a\\u202e"
    encoded = json_safe(json.dumps({"t": "x\x9by\u2028"}, ensure_ascii=False))
    assert "\x9b" not in encoded and json.loads(encoded) == {"t": "x\x9by\u2028"}


def test_the_log_filter_keeps_outside_text_on_one_line() -> None:
    record = logging.LogRecord(
        "tasks", logging.INFO, __file__, 1, "job %s: %s", ("j1", "x\n[fake] line"), None
    )
    assert ControlCharFilter().filter(record)
    assert record.getMessage() == "job j1: x\\x0a[fake] line"
