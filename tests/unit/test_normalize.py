"""normalize(): the three result shapes (checked against the contract's schema) -> Transcript."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from tasks.catalog import Family
from tasks.errors import PermanentError
from tasks.models import Segment, Transcript, Usage, Word
from tasks.normalize import detect_family, normalize

CONTRACT = Path(__file__).parents[1] / "contract" / "aiml-stt-openapi.json"

# The vendor doc's example answer for openai/gpt-4o-mini-transcribe, verbatim.
DOC_OPENAI_RESULT: dict[str, Any] = {
    "text": "He doesn't belong to you, and I don't see how you have anything to do with what is be his power of. He's he personified that from this stage to you.",  # noqa: E501
    "usage": {
        "type": "tokens",
        "total_tokens": 137,
        "input_tokens": 100,
        "input_token_details": {"text_tokens": 0, "audio_tokens": 100},
        "output_tokens": 37,
    },
}

_WORDS = [
    {"word": "hello", "start": 0.08, "end": 0.4, "confidence": 0.99, "punctuated_word": "Hello"},
    {"word": "world", "start": 0.4, "end": 0.9, "confidence": 0.97, "punctuated_word": "world."},
    {"word": "how", "start": 1.2, "end": 1.4, "confidence": 0.95, "punctuated_word": "How"},
    {"word": "are", "start": 1.4, "end": 1.6, "confidence": 0.96, "punctuated_word": "are"},
    {"word": "you", "start": 1.6, "end": 2.0, "confidence": 0.93, "punctuated_word": "you?"},
]
_SENTENCES = [
    {"text": "Hello world.", "start": 0.08, "end": 0.9},
    {"text": "How are you?", "start": 1.2, "end": 2.0},
]
_METADATA = {
    "transaction_key": "deprecated",
    "request_id": "7b6f6c1e-2a43-4c8f-9b8e-3f0c2f4f1a11",
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "created": "2025-06-01T12:00:00.000Z",
    "duration": 3.5,
    "channels": 1,
    "models": ["1abfe86b-e047-4eed-858a-35e5625b41ee"],
    "model_info": {
        "1abfe86b-e047-4eed-858a-35e5625b41ee": {
            "name": "general-nova-2",
            "version": "2024-01-09.29447",
            "arch": "nova-2",
        }
    },
}

# Deepgram as the contract draws it: channels is ONE object, paragraphs an array of
# {transcript, paragraphs: {sentences, ...}}.
DEEPGRAM_CONTRACT: dict[str, Any] = {
    "metadata": _METADATA,
    "results": {
        "channels": {
            "alternatives": [
                {
                    "transcript": "Hello world. How are you?",
                    "confidence": 0.97,
                    "words": _WORDS,
                    "paragraphs": [
                        {
                            "transcript": "\nHello world. How are you?",
                            "paragraphs": {
                                "sentences": _SENTENCES,
                                "num_words": 5,
                                "start": 0.08,
                                "end": 2.0,
                            },
                        }
                    ],
                }
            ]
        }
    },
}

# Deepgram as it really answers: channels is a LIST, paragraphs an object holding a list of
# paragraphs (with a speaker when diarizing), words carry a numeric speaker.
DEEPGRAM_REAL: dict[str, Any] = {
    "metadata": _METADATA,
    "results": {
        "channels": [
            {
                "detected_language": "en",
                "alternatives": [
                    {
                        "transcript": "Hello world. How are you?",
                        "confidence": 0.97,
                        "words": [{**w, "speaker": 0} for w in _WORDS],
                        "paragraphs": {
                            "transcript": "\nSpeaker 0: Hello world. How are you?",
                            "paragraphs": [
                                {
                                    "sentences": _SENTENCES,
                                    "speaker": 0,
                                    "num_words": 5,
                                    "start": 0.08,
                                    "end": 2.0,
                                }
                            ],
                        },
                    }
                ],
            }
        ]
    },
}

# AssemblyAI: times in milliseconds, audio_duration in seconds (as the real API answers).
ASSEMBLYAI: dict[str, Any] = {
    "id": "6a0a5d3c-59b2-4f6b-8d3e-2f3e0c7a1b22",
    "status": "completed",
    "language_code": "en_us",
    "speech_model": "universal",
    "text": "Hi there. Hello.",
    "words": [
        {"text": "Hi", "start": 240, "end": 480, "confidence": 0.99, "speaker": "A"},
        {"text": "there.", "start": 480, "end": 900, "confidence": 0.98, "speaker": "A"},
        {"text": "Hello.", "start": 1500, "end": 2100, "confidence": 0.97, "speaker": "B"},
    ],
    "utterances": [
        {
            "text": "Hi there.",
            "start": 240,
            "end": 900,
            "confidence": 0.985,
            "speaker": "A",
            "words": [
                {"text": "Hi", "start": 240, "end": 480, "confidence": 0.99, "speaker": "A"},
                {"text": "there.", "start": 480, "end": 900, "confidence": 0.98, "speaker": "A"},
            ],
        },
        {
            "text": "Hello.",
            "start": 1500,
            "end": 2100,
            "confidence": 0.97,
            "speaker": "B",
            "words": [
                {"text": "Hello.", "start": 1500, "end": 2100, "confidence": 0.97, "speaker": "B"}
            ],
        },
    ],
    "confidence": 0.98,
    "audio_duration": 2.5,
    "punctuate": True,
    "format_text": True,
    "speaker_labels": True,
}


def _contract_branch(index: int) -> dict[str, Any]:
    schema = json.loads(CONTRACT.read_text())["components"]["schemas"]
    branch: dict[str, Any] = schema["Voice.v1.SpeechToTextGetResponseDTO"]["properties"]["result"][
        "anyOf"
    ][index]
    return branch


@pytest.mark.parametrize(
    ("sample", "branch"),
    [(DEEPGRAM_CONTRACT, 0), (ASSEMBLYAI, 1), (DOC_OPENAI_RESULT, 2)],
    ids=["deepgram", "assemblyai", "openai"],
)
def test_samples_follow_the_contract(sample: dict[str, Any], branch: int) -> None:
    jsonschema.validate(sample, _contract_branch(branch))


def test_doc_openai_example() -> None:
    transcript = normalize(DOC_OPENAI_RESULT, model="openai/gpt-4o-mini-transcribe")
    assert transcript.text.startswith("He doesn't belong to you, and I don't see how")
    assert transcript.text.endswith("from this stage to you.")
    assert transcript.words == ()
    assert transcript.segments == ()
    assert transcript.usage == Usage(
        input_tokens=100, audio_tokens=100, text_tokens=0, output_tokens=37, total_tokens=137
    )


def test_openai_without_details_or_usage() -> None:
    bare = normalize({"text": " just text "})
    assert bare == Transcript(text="just text")
    partial = normalize({"text": "t", "usage": {"input_tokens": 5, "output_tokens": 2}})
    assert partial.usage == Usage(input_tokens=5, output_tokens=2)


def test_whisper_verbose_json_and_duration_usage() -> None:
    result = {
        "text": "Hi all.",
        "language": "english",
        "duration": 2.25,
        "words": [
            {"word": "Hi", "start": 0.0, "end": 0.3},
            {"word": "all.", "start": 0.3, "end": 0.8},
        ],
        "segments": [{"id": 0, "text": " Hi all.", "start": 0.0, "end": 0.8}],
        "usage": {"type": "duration", "seconds": 3},
    }
    transcript = normalize(result)
    assert transcript.words == (Word("Hi", 0.0, 0.3), Word("all.", 0.3, 0.8))
    assert transcript.segments == (Segment("Hi all.", 0.0, 0.8),)
    assert transcript.language == "english"
    assert transcript.usage == Usage(billed_seconds=3.0, audio_seconds=2.25)


def test_deepgram_as_the_contract_draws_it() -> None:
    transcript = normalize(DEEPGRAM_CONTRACT, model="#g1_nova-2-general")
    assert transcript.text == "Hello world. How are you?"
    assert [w.text for w in transcript.words] == ["Hello", "world.", "How", "are", "you?"]
    assert transcript.words[0] == Word("Hello", 0.08, 0.4, 0.99, None)
    assert transcript.segments == (
        Segment("Hello world.", 0.08, 0.9),
        Segment("How are you?", 1.2, 2.0),
    )
    assert transcript.usage == Usage(billed_seconds=3.5, audio_seconds=3.5)
    assert transcript.language is None


def test_deepgram_as_it_really_answers() -> None:
    transcript = normalize(DEEPGRAM_REAL, model="#g1_nova-2-general")
    assert transcript.text == "Hello world. How are you?"
    assert transcript.words[4] == Word("you?", 1.6, 2.0, 0.93, "0")
    assert transcript.segments == (
        Segment("Hello world.", 0.08, 0.9, "0"),
        Segment("How are you?", 1.2, 2.0, "0"),
    )
    assert transcript.language == "en"
    assert transcript.usage.billed_seconds == 3.5


def test_deepgram_word_without_punctuation_uses_the_raw_word() -> None:
    sample = copy.deepcopy(DEEPGRAM_REAL)
    alternative = sample["results"]["channels"][0]["alternatives"][0]
    alternative["words"] = [{"word": "hello", "start": 0.0, "end": 0.5}]
    del alternative["paragraphs"]
    transcript = normalize(sample)
    assert transcript.words == (Word("hello", 0.0, 0.5),)
    assert transcript.segments == ()


@pytest.mark.parametrize("results", [None, {"channels": []}, {"channels": {"alternatives": []}}])
def test_deepgram_without_alternatives_is_permanent(results: Any) -> None:
    with pytest.raises(PermanentError, match="alternatives"):
        normalize({"metadata": _METADATA, "results": results})


def test_assemblyai_converts_milliseconds_to_seconds() -> None:
    transcript = normalize(ASSEMBLYAI, model="aai/universal")
    assert transcript.text == "Hi there. Hello."
    assert transcript.words == (
        Word("Hi", 0.24, 0.48, 0.99, "A"),
        Word("there.", 0.48, 0.9, 0.98, "A"),
        Word("Hello.", 1.5, 2.1, 0.97, "B"),
    )
    assert transcript.segments == (
        Segment("Hi there.", 0.24, 0.9, "A"),
        Segment("Hello.", 1.5, 2.1, "B"),
    )
    assert transcript.language == "en_us"
    assert transcript.usage == Usage(billed_seconds=2.5, audio_seconds=2.5)


def test_assemblyai_error_and_unfinished_are_permanent() -> None:
    with pytest.raises(PermanentError, match="Download error"):
        normalize({"id": "x", "status": "error", "error": "Download error"})
    with pytest.raises(PermanentError, match="no text"):
        normalize({"id": "x", "status": "processing", "text": None})


def test_malformed_timed_entries_are_skipped_not_fatal() -> None:
    sample = copy.deepcopy(ASSEMBLYAI)
    sample["words"] = [
        {"text": "ok", "start": 0, "end": 100},
        {"text": "no-times"},
        {"start": 1, "end": 2},
        "not a dict",
        {"text": "bool", "start": True, "end": 5},
    ]
    assert [w.text for w in normalize(sample).words] == ["ok"]


@pytest.mark.parametrize(
    "result",
    [{}, {"transcript": "x"}, {"text": 5}, {"results": "x"}, {"id": "x"}],
    ids=["empty", "foreign", "text-not-str", "results-not-obj", "id-without-status"],
)
def test_unknown_shapes_are_permanent(result: dict[str, Any]) -> None:
    with pytest.raises(PermanentError, match="unknown result shape: keys"):
        normalize(result)


def test_unknown_shape_names_its_keys() -> None:
    with pytest.raises(PermanentError) as info:
        normalize({"b": 1, "a": 2})
    assert info.value.message == "unknown result shape: keys a, b"


def test_none_and_non_objects_are_permanent() -> None:
    with pytest.raises(PermanentError, match="without a result"):
        normalize(None)
    with pytest.raises(PermanentError, match="a list"):
        normalize([DOC_OPENAI_RESULT])  # type: ignore[arg-type]


def test_shape_is_detected_from_the_data_not_the_model() -> None:
    # An OpenAI model id with a Deepgram answer still reads as Deepgram.
    transcript = normalize(DEEPGRAM_CONTRACT, model="openai/gpt-4o-transcribe")
    assert transcript.usage.billed_seconds == 3.5
    assert detect_family(ASSEMBLYAI) is Family.ASSEMBLYAI
    assert detect_family(DOC_OPENAI_RESULT) is Family.OPENAI
    assert detect_family(DEEPGRAM_REAL) is Family.DEEPGRAM


def test_hint_breaks_ties() -> None:
    # Both a Deepgram-ish and an AssemblyAI-ish answer: the model's family decides.
    ambiguous = {**ASSEMBLYAI, "metadata": _METADATA}
    assert detect_family(ambiguous) is Family.DEEPGRAM
    assert detect_family(ambiguous, hint=Family.ASSEMBLYAI) is Family.ASSEMBLYAI
    assert normalize(ambiguous, model="aai/universal").text == "Hi there. Hello."
