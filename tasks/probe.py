"""How long is the audio? Read it off the file's first bytes, before the submit.

Duration-aware polling (docs/polling.md) needs the audio's length before the first poll.
When the caller did not give it, the worker asks the audio URL once for its first
``PROBE_BYTES`` (an HTTP range request; a server without range support answers 200 and is
read only that far) and lets ``mutagen``, a well-kept audio metadata library, parse the
header: WAV (the data chunk's size), MP3 (a Xing/VBRI header, or CBR frames and the file's
size from ``Content-Range``/``Content-Length``), FLAC (STREAMINFO), Ogg, M4A (a ``moov``
at the front).

Any failure means "unknown", never a failed job: the job is polled on today's schedule.
The probe sends no credentials (no auth header, no cookies, no ``.netrc``), follows no
redirects, stops after ``PROBE_TIMEOUT`` seconds in all, and the caller passes the session
that applies the deployment's address rules (the callbacks' SSRF guard): a URL the
worker may not reach is not probed.
"""

from __future__ import annotations

import io
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import requests

from tasks.deadline import deadline
from tasks.netguard import guarded_session
from tasks.settings import IPNetwork

__all__ = [
    "MAX_DURATION",
    "PROBE_BYTES",
    "PROBE_TIMEOUT",
    "duration_from_bytes",
    "guarded_probe",
    "probe_duration",
]

log = logging.getLogger(__name__)

PROBE_BYTES = 256 * 1024  # headers, Xing frames and a front moov fit; a whole file need not
PROBE_TIMEOUT = 5.0  # seconds for the whole probe: it delays the submit
MAX_DURATION = 48 * 3600.0  # a header claiming more is lying (or not audio we can use)
_CONTENT_RANGE = re.compile(r"bytes\s+\d+-\d+/(\d+)", re.IGNORECASE)


class _Head(io.RawIOBase):
    """The file's first bytes, with the size the server said the whole file has.

    mutagen derives a CBR MP3's length from the file's size (seek to the end): reads past
    the head return end-of-file, the size is the real one.
    """

    def __init__(self, head: bytes, size: int) -> None:
        self._head, self._size, self._pos = head, max(size, len(head)), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        chunk = self._head[self._pos : self._pos + len(buffer)]
        buffer[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


def _parser(head: bytes) -> Callable[[Any], Any] | None:
    """The mutagen class for ``head``'s format, by its magic bytes."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        from mutagen.wave import WAVE

        return WAVE
    if head[:4] == b"fLaC":
        from mutagen.flac import FLAC

        return FLAC
    if head[:4] == b"OggS":
        from mutagen.oggvorbis import OggVorbis

        return OggVorbis
    if head[4:8] == b"ftyp":
        from mutagen.mp4 import MP4

        return MP4
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        from mutagen.mp3 import MP3

        return MP3
    return None


def duration_from_bytes(head: bytes, size: int | None = None) -> float | None:
    """Seconds of audio from a file's first bytes (and its full size); None if unknown."""
    parser = _parser(head)
    if parser is None:
        return None
    try:
        info = parser(_Head(head, size or len(head))).info
        length = float(info.length)
    except Exception as exc:  # any parse failure is "unknown", never an error
        log.debug("probe: %s could not read a duration: %s", getattr(parser, "__name__", ""), exc)
        return None
    if not math.isfinite(length) or not 0 < length <= MAX_DURATION:
        return None
    return length


def _total_size(response: requests.Response) -> int | None:
    if response.status_code == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        return int(match.group(1)) if match else None
    length = response.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


def probe_duration(
    url: str,
    session: requests.Session,
    *,
    max_bytes: int = PROBE_BYTES,
    timeout: float = PROBE_TIMEOUT,
    clock: Callable[[], float] = time.monotonic,
) -> float | None:
    """The audio's duration in seconds from one range request, or None if unknown."""
    deadline = clock() + timeout
    try:
        with session.get(
            url,
            headers={"Range": f"bytes=0-{max_bytes - 1}", "Accept-Encoding": "identity"},
            stream=True,
            allow_redirects=False,
            timeout=(min(timeout, 3.0), min(timeout, 1.0)),
        ) as response:
            if response.status_code not in (200, 206):
                return None
            size = _total_size(response)
            head = bytearray()
            # read1: whatever has arrived (up to the socket's read timeout), so a server
            # trickling a byte at a time is cut off at the deadline, not after 256 KiB.
            while len(head) < max_bytes and clock() < deadline:
                chunk = response.raw.read1(min(16 * 1024, max_bytes - len(head)))
                if not chunk:
                    break
                head += chunk
            if clock() >= deadline:
                return None  # a slow server: unknown, the submit must not wait on it
    except Exception as exc:  # network, TLS, refused destination: all "unknown"
        log.debug("probe of the audio failed: %s", type(exc).__name__)
        return None
    return duration_from_bytes(bytes(head[:max_bytes]), size)


def guarded_probe(
    url: str, allow: Sequence[IPNetwork], *, timeout: float = PROBE_TIMEOUT
) -> float | None:
    """``probe_duration`` through the callbacks' SSRF guard (``tasks.netguard``): only
    public addresses or ``STT_CALLBACK_ALLOW_NETWORKS``, checked on the address actually
    connected to, no credentials, and a total deadline on the exchange (``tasks.deadline``)
    on top of the probe's own. A refused address is "unknown", like any other failure."""
    with deadline(timeout), guarded_session(allow) as session:
        return probe_duration(url, session, timeout=timeout)
