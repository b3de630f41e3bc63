"""Deterministic transcripts, durations and token counts, as pure functions.

Tests in any package must know the exact text the emulator will return, so everything here
depends only on the *source* (the audio URL, or the hex SHA-256 of uploaded bytes) and the
audio duration. The documented ratios live here and nowhere else:

* duration of audio the emulator cannot read: ``3 + (first 4 bytes of sha256(source) as a
  big-endian integer mod 59701) / 100`` seconds, i.e. 3.00 .. 600.00 s in 10 ms steps;
* words spoken: ``round(duration * 2.5)`` (150 words per minute), at least 1;
* OpenAI usage: ``audio_tokens = ceil(duration * 10)``, ``text_tokens = ceil(prompt words *
  4/3)``, ``output_tokens = ceil(transcript words * 4/3)``.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Any

from workers.emulator.audio import sample_seconds_in_url
from workers.emulator.conventions import forcing_for

__all__ = [
    "AUDIO_TOKENS_PER_SECOND",
    "TOKENS_PER_WORD",
    "WORDS_PER_SECOND",
    "Script",
    "derived_duration",
    "duration_for",
    "expected_transcript",
    "script_for",
    "usage_for",
]

WORDS_PER_SECOND = 2.5
AUDIO_TOKENS_PER_SECOND = 10
TOKENS_PER_WORD = 4 / 3
MIN_DERIVED_SECONDS = 3.0
_DERIVED_STEPS = 59701  # 0 .. 59700 hundredths of a second above the minimum

_WORDS = (
    "the a an this that our their every some many other new old small large early late "
    "river city morning evening market station garden letter window signal report engine "
    "meeting project budget weather harbor village teacher doctor driver farmer pilot "
    "family customer system network kitchen library museum journey answer question "
    "reason moment winter summer island mountain forest bridge street ticket office "
    "arrives leaves opens closes carries follows reaches watches builds finds keeps "
    "brings shows turns moves changes starts finishes explains remembers describes "
    "quickly slowly quietly clearly again together already almost always never often "
    "before after during under over through across behind beside between toward "
    "and but because while until since although"
)
_VOCABULARY = tuple(_WORDS.split())
_END_QUESTION = 0.1
_COMMA = 0.08


@dataclass(frozen=True, slots=True)
class Script:
    """A transcript as sentences of punctuated words (capitalized, with , . ? attached)."""

    sentences: tuple[tuple[str, ...], ...]

    @property
    def words(self) -> list[str]:
        return [word for sentence in self.sentences for word in sentence]

    @property
    def text(self) -> str:
        return " ".join(" ".join(sentence) for sentence in self.sentences)


def _digest(source: str) -> bytes:
    return hashlib.sha256(source.encode("utf-8")).digest()


def derived_duration(source: str) -> float:
    """The duration the emulator assumes for audio it cannot read (3..600 s)."""
    steps = int.from_bytes(_digest(source)[:4], "big") % _DERIVED_STEPS
    return MIN_DERIVED_SECONDS + steps / 100


def duration_for(source: str) -> float:
    """The duration the emulator uses for ``source`` when it does not read a file.

    A ``force-duration-<s>`` marker wins; then a local sample URL's exact length; then
    ``derived_duration``. For other local WAV URLs and uploads the server uses the file's
    real length instead, which a caller passes to ``expected_transcript`` itself.
    """
    forced = forcing_for(source).duration
    if forced is not None:
        return forced
    sample = sample_seconds_in_url(source)
    return sample if sample is not None else derived_duration(source)


def _word_count(duration: float) -> int:
    return max(1, math.floor(duration * WORDS_PER_SECOND + 0.5))


def script_for(source: str, duration: float, *, empty: bool = False) -> Script:
    """The sentences spoken in ``source``: seeded by its SHA-256, sized by ``duration``."""
    if empty:
        return Script(())
    rng = random.Random(int.from_bytes(_digest(source), "big"))
    remaining = _word_count(duration)
    sentences: list[tuple[str, ...]] = []
    while remaining > 0:
        length = min(remaining, rng.randint(5, 12))
        remaining -= length
        words = [rng.choice(_VOCABULARY) for _ in range(length)]
        words[0] = words[0].capitalize()
        for i in range(length - 1):
            if rng.random() < _COMMA:
                words[i] += ","
        words[-1] += "?" if rng.random() < _END_QUESTION else "."
        sentences.append(tuple(words))
    return Script(tuple(sentences))


def expected_transcript(source: str, duration: float | None = None) -> str:
    """The exact text the emulator returns for ``source``, whichever model transcribes it.

    ``source`` is the audio URL as sent in ``url``, or for a multipart upload the hex
    SHA-256 of the uploaded bytes. ``duration`` defaults to ``duration_for(source)``, which
    is right for every URL except a local WAV that is not an emulator sample (pass its
    length) and for uploads (pass the WAV's length).
    """
    if duration is None:
        duration = duration_for(source)
    return script_for(source, duration, empty=forcing_for(source).empty).text


def _ceil(value: float) -> int:
    """Ceiling that ignores float noise (``0.7 * 10`` is 7, not 8)."""
    return math.ceil(round(value, 6))


def usage_for(duration: float, n_words: int, prompt: str | None) -> dict[str, Any]:
    """The OpenAI ``usage`` object for a transcription (see the module doc for ratios)."""
    audio = _ceil(duration * AUDIO_TOKENS_PER_SECOND)
    text = _ceil(len(prompt.split()) * TOKENS_PER_WORD) if prompt else 0
    output = _ceil(n_words * TOKENS_PER_WORD)
    return {
        "type": "tokens",
        "input_tokens": audio + text,
        "input_token_details": {"text_tokens": text, "audio_tokens": audio},
        "output_tokens": output,
        "total_tokens": audio + text + output,
    }
