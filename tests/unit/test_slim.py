"""slim_result(): the raw result without what the text/words/segments columns hold."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tasks.normalize import normalize
from tasks.slim import MARKER, is_slim, omitted, slim_result
from tests.unit.test_normalize import (
    ASSEMBLYAI,
    DEEPGRAM_CONTRACT,
    DEEPGRAM_REAL,
    DOC_OPENAI_RESULT,
)

WHISPER_VERBOSE: dict[str, Any] = {
    "text": "Hello world.",
    "language": "english",
    "duration": 1.5,
    "words": [
        {"word": "Hello", "start": 0.0, "end": 0.5},
        {"word": "world.", "start": 0.5, "end": 1},
    ],
    "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": 1.0, "text": "Hello world."}],
    "usage": {"type": "duration", "seconds": 2},
}


def _size(value: Any) -> int:
    return len(json.dumps(value).encode())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (DOC_OPENAI_RESULT, {"text": "text"}),
        (
            WHISPER_VERBOSE,
            {"text": "text", "words": "words", "segments": "segments"},
        ),
        (
            DEEPGRAM_CONTRACT,
            {
                "results.channels.alternatives[0].transcript": "text",
                "results.channels.alternatives[0].words": "words",
                "results.channels.alternatives[0].paragraphs": "segments",
            },
        ),
        (
            DEEPGRAM_REAL,
            {
                "results.channels[0].alternatives[0].transcript": "text",
                "results.channels[0].alternatives[0].words": "words",
                "results.channels[0].alternatives[0].paragraphs": "segments",
            },
        ),
        (ASSEMBLYAI, {"text": "text", "words": "words", "utterances": "segments"}),
    ],
    ids=["openai", "whisper-verbose", "deepgram-contract", "deepgram-real", "assemblyai"],
)
def test_each_family_drops_what_the_columns_hold_and_says_so(
    raw: dict[str, Any], expected: dict[str, str]
) -> None:
    before = copy.deepcopy(raw)
    slim = slim_result(raw, normalize(raw))
    assert raw == before  # the input is not changed
    assert slim is not None and is_slim(slim)
    assert omitted(slim) == expected
    note = slim[MARKER]
    assert "column" in note["reason"]
    assert note["bytes"] > 0
    assert _size(slim) < _size(raw)
    # Everything else the vendor sent is still there, untouched.
    for key in raw:
        if key not in expected and key != "results":
            assert slim[key] == raw[key]


def test_deepgram_keeps_metadata_and_the_alternatives_other_fields() -> None:
    slim = slim_result(DEEPGRAM_REAL, normalize(DEEPGRAM_REAL))
    assert slim is not None
    assert slim["metadata"] == DEEPGRAM_REAL["metadata"]
    channel = slim["results"]["channels"][0]
    assert channel["detected_language"] == "en"
    assert channel["alternatives"][0] == {"confidence": 0.97}


def test_assemblyai_keeps_its_flags_and_duration() -> None:
    slim = slim_result(ASSEMBLYAI, normalize(ASSEMBLYAI))
    assert slim is not None
    assert {k: v for k, v in slim.items() if k != MARKER} == {
        k: v for k, v in ASSEMBLYAI.items() if k not in ("text", "words", "utterances")
    }


def test_a_list_normalize_could_not_read_is_kept() -> None:
    raw = {**ASSEMBLYAI, "words": [{"text": "no times"}], "utterances": []}
    slim = slim_result(raw, normalize(raw))
    assert slim is not None
    # No word had times, so the words column is empty: the raw list is all there is.
    assert slim["words"] == [{"text": "no times"}]
    # An empty list is held by an empty column just as well.
    assert omitted(slim) == {"text": "text", "utterances": "segments"}


def test_slimming_twice_changes_nothing() -> None:
    once = slim_result(ASSEMBLYAI, normalize(ASSEMBLYAI))
    assert slim_result(once, normalize(ASSEMBLYAI)) == once


def test_unknown_shapes_and_none_pass_through() -> None:
    transcript = normalize(DOC_OPENAI_RESULT)
    assert slim_result(None, transcript) is None
    odd = {"something": ["else"]}
    assert slim_result(odd, transcript) == odd
    assert not is_slim(odd) and omitted(odd) == {} and omitted(None) == {}
