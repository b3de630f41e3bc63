"""Audio the emulator can read or make: sample WAVs, WAV durations, local downloads.

The emulator has no internet, so it only downloads from this machine (``127.0.0.1``,
``localhost``, ``::1``); any other URL gets a duration derived from the URL itself (see
``transcript.derived_duration``). The sample WAVs it serves let tests use real files.
"""

from __future__ import annotations

import io
import re
import struct
import wave
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

import aiohttp

__all__ = [
    "LOCAL_HOSTS",
    "MAX_SAMPLE_SECONDS",
    "SAMPLE_RATE",
    "Download",
    "fetch_local",
    "is_local",
    "parse_sample_name",
    "sample_duration",
    "sample_seconds_in_url",
    "sample_wav",
    "wav_duration",
]

SAMPLE_RATE = 8000  # Hz, mono, 16-bit: 16 kB per second keeps long samples cheap
MAX_SAMPLE_SECONDS = 3600.0
MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024
DOWNLOAD_TIMEOUT = 10.0
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_TONE_HZ = 400  # divides SAMPLE_RATE, so one period is a whole number of samples
_SAMPLE_NAME = re.compile(r"^(\d+(?:\.\d+)?)s\.wav$")
_SAMPLE_PATH = re.compile(r"/_emulator/samples/(\d+(?:\.\d+)?)s\.wav$")


def parse_sample_name(name: str) -> float | None:
    """Seconds asked for by a sample file name like ``2.5s.wav``; None if malformed."""
    match = _SAMPLE_NAME.match(name)
    if match is None:
        return None
    seconds = float(match.group(1))
    return seconds if 0 < seconds <= MAX_SAMPLE_SECONDS else None


def sample_duration(seconds: float) -> float:
    """The exact duration of the sample WAV served for ``seconds`` (whole frames)."""
    return round(seconds * SAMPLE_RATE) / SAMPLE_RATE


@lru_cache(maxsize=32)
def sample_wav(seconds: float) -> bytes:
    """A mono 16-bit WAV of a quiet 400 Hz tone lasting ``sample_duration(seconds)``."""
    frames = round(seconds * SAMPLE_RATE)
    period = SAMPLE_RATE // _TONE_HZ
    one_period = b"".join(
        struct.pack("<h", round(3000 * _triangle(i / period))) for i in range(period)
    )
    pcm = (one_period * (frames // period + 1))[: frames * 2]
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm)
    return out.getvalue()


def _triangle(phase: float) -> float:
    return 4 * phase - 1 if phase < 0.5 else 3 - 4 * phase


def wav_duration(data: bytes) -> float | None:
    """Duration in seconds if ``data`` is a WAV file the stdlib can read, else None."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            rate = wav.getframerate()
            return wav.getnframes() / rate if rate > 0 else None
    except (wave.Error, EOFError, struct.error):
        return None


def is_local(url: str) -> bool:
    """Whether the emulator may download ``url``: http(s) on this machine only."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and (parts.hostname or "") in LOCAL_HOSTS


def sample_seconds_in_url(url: str) -> float | None:
    """The exact duration of a local ``/_emulator/samples/<s>s.wav`` URL, else None.

    Lets ``expected_transcript`` know a sample's duration without downloading it.
    """
    if not is_local(url):
        return None
    match = _SAMPLE_PATH.search(urlsplit(url).path)
    if match is None:
        return None
    seconds = parse_sample_name(f"{match.group(1)}s.wav")
    return sample_duration(seconds) if seconds is not None else None


@dataclass(frozen=True, slots=True)
class Download:
    """The outcome of fetching a local audio URL: bytes, or why there are none."""

    data: bytes | None
    error: str | None = None


async def fetch_local(session: aiohttp.ClientSession, url: str) -> Download:
    """GET a local URL; a failure becomes a ``Download`` with ``error`` (the job fails)."""
    try:
        timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT)
        async with session.get(url, timeout=timeout) as response:
            if response.status >= 400:
                return Download(None, f"Failed to download the audio file: HTTP {response.status}")
            data = await response.content.read(MAX_DOWNLOAD_BYTES)
            return Download(data)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Download(None, f"Failed to download the audio file: {type(exc).__name__}")
