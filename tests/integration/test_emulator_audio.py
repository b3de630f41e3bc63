"""Realism: durations from the audio itself, deterministic transcripts, token ratios."""

from __future__ import annotations

import hashlib
import io
import itertools
import math
import wave
from typing import Any

import pytest
import requests

from tests.fixtures.emulator import EmulatorHandle
from workers.emulator import duration_for, expected_transcript
from workers.emulator.audio import sample_wav

FAMILY_MODELS = ("openai/gpt-4o-transcribe", "#g1_whisper-small", "aai/universal")


def text_of(result: dict[str, Any]) -> str:
    if "metadata" in result:
        return str(result["results"]["channels"]["alternatives"][0]["transcript"])
    return str(result["text"])


def finish(
    emulator: EmulatorHandle, url: str, model: str = "openai/gpt-4o-mini-transcribe", **fields: Any
) -> dict[str, Any]:
    response = emulator.create(url, model, **fields)
    assert response.status_code == 201, response.text
    return emulator.wait(response.json()["generation_id"])


@pytest.fixture
def fast(emulator: EmulatorHandle) -> EmulatorHandle:
    emulator.configure(fixed=0.0, queue_delay=0.0)
    return emulator


def test_sample_endpoint_serves_a_wav_of_that_length(emulator: EmulatorHandle) -> None:
    response = requests.get(emulator.sample_url(2.5), timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "audio/wav"
    with wave.open(io.BytesIO(response.content)) as wav:
        assert wav.getnframes() / wav.getframerate() == 2.5
        assert wav.getnchannels() == 1
    assert (
        requests.get(f"{emulator.base_url}/_emulator/samples/abc.wav", timeout=10).status_code
        == 404
    )


def test_local_wav_duration_is_read_from_the_file(fast: EmulatorHandle) -> None:
    url = fast.sample_url(7.25)
    generation_id = fast.create(url).json()["generation_id"]
    usage = fast.wait(generation_id)["result"]["usage"]
    assert fast.job(generation_id)["duration"] == 7.25
    assert usage["input_token_details"]["audio_tokens"] == 73  # ceil(7.25 s * 10 tokens/s)
    sha = hashlib.sha256(sample_wav(7.25)).hexdigest()
    assert fast.job(generation_id)["audio_sha256"] == sha


def test_unreachable_local_audio_ends_in_error(fast: EmulatorHandle) -> None:
    body = finish(fast, f"{fast.base_url}/_emulator/samples/missing.wav")
    assert body["status"] == "error"
    assert "Failed to download the audio file: HTTP 404" in body["error"]


def test_remote_urls_are_never_fetched_and_get_a_derived_duration(fast: EmulatorHandle) -> None:
    url = "https://audio.invalid/interview.mp3"  # would fail if fetched
    generation_id = fast.create(url).json()["generation_id"]
    assert fast.wait(generation_id)["status"] == "completed"
    duration = fast.job(generation_id)["duration"]
    assert duration == duration_for(url)
    assert 3.0 <= duration <= 600.0
    assert duration != duration_for("https://audio.invalid/other.mp3")


def test_uploaded_wav_duration_and_transcript_come_from_its_bytes(fast: EmulatorHandle) -> None:
    data = sample_wav(3.5)
    sha = hashlib.sha256(data).hexdigest()
    response = requests.post(
        f"{fast.api_base}/stt/create",
        headers=fast.headers,
        data={"model": "aai/best", "temperature": "0.3"},
        files={"audio": ("a.wav", data, "audio/wav")},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    body = fast.wait(response.json()["generation_id"])
    assert body["result"]["audio_duration"] == 3.5
    assert body["result"]["text"] == expected_transcript(sha, 3.5)
    assert fast.create_counts() == {sha: 1}


def test_upload_without_model_is_rejected(emulator: EmulatorHandle) -> None:
    response = requests.post(
        f"{emulator.api_base}/stt/create",
        headers=emulator.headers,
        files={"audio": ("a.wav", sample_wav(1), "audio/wav")},
        timeout=10,
    )
    assert response.status_code == 400
    assert {e["field"] for e in response.json()["errors"]} == {"model"}


@pytest.mark.parametrize("model", FAMILY_MODELS)
def test_transcript_is_the_expected_one_for_every_family(fast: EmulatorHandle, model: str) -> None:
    for url in ("https://example.com/call-1.mp3", fast.sample_url(4)):
        assert text_of(finish(fast, url, model)["result"]) == expected_transcript(url)


def test_transcripts_are_deterministic_and_differ_per_audio(fast: EmulatorHandle) -> None:
    first = finish(fast, "https://example.com/a.mp3")["result"]["text"]
    again = finish(fast, "https://example.com/a.mp3")["result"]["text"]
    other = finish(fast, "https://example.com/b.mp3")["result"]["text"]
    assert first == again != other


def test_word_count_follows_duration(fast: EmulatorHandle) -> None:
    text = finish(fast, "https://example.com/force-duration-60/a.mp3")["result"]["text"]
    assert len(text.split()) == 150  # 2.5 words per second


def test_usage_tokens_follow_the_documented_ratios(fast: EmulatorHandle) -> None:
    url = "https://example.com/force-duration-12.34/a.mp3"
    result = finish(fast, url, prompt="names: Ada Lovelace, Alan Turing")["result"]
    usage, words = result["usage"], len(result["text"].split())
    assert usage["type"] == "tokens"
    assert usage["input_token_details"] == {"audio_tokens": 124, "text_tokens": 7}
    assert usage["input_tokens"] == 131
    assert usage["output_tokens"] == math.ceil(words * 4 / 3)
    assert usage["total_tokens"] == 131 + usage["output_tokens"]


def test_forced_empty_transcript(fast: EmulatorHandle) -> None:
    url = "https://example.com/force-empty.mp3"
    for model in FAMILY_MODELS:
        assert text_of(finish(fast, url, model)["result"]) == "" == expected_transcript(url)


def test_forced_duration_beats_the_file(fast: EmulatorHandle) -> None:
    url = fast.sample_url(2) + "?force-duration-42"
    generation_id = fast.create(url, "aai/nano").json()["generation_id"]
    assert fast.wait(generation_id)["result"]["audio_duration"] == 42.0


def test_word_timings_span_the_audio(fast: EmulatorHandle) -> None:
    result = finish(fast, "https://example.com/force-duration-10/x.mp3", "#g1_nova-3-general")[
        "result"
    ]
    words = result["results"]["channels"]["alternatives"][0]["words"]
    assert words[0]["start"] == 0.0
    assert 9.0 < words[-1]["end"] <= 10.0
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(words))
    aai = finish(fast, "https://example.com/force-duration-10/x.mp3", "aai/best")["result"]
    assert aai["words"][-1]["end"] == round(words[-1]["end"] * 1000)  # milliseconds
