"""The audio probe (tasks/probe.py) against a real local HTTP server and real file headers."""

from __future__ import annotations

import time

import pytest
import requests

from tasks.probe import PROBE_BYTES, duration_from_bytes, probe_duration
from tests.fixtures.audio_files import (
    AudioServer,
    flac_file,
    mp3_cbr,
    mp3_xing,
    wav_file,
)

FORMATS = {
    "a.wav": (wav_file, 2.5),
    "b.mp3": (mp3_cbr, 600.0),  # 9.6 MB: only the first 256 KiB are read
    "c.mp3": (mp3_xing, 1800.0),
    "d.flac": (flac_file, 42.0),
}


@pytest.fixture
def session() -> requests.Session:
    plain = requests.Session()
    plain.trust_env = False  # no proxies, no .netrc: the probe sends no credentials
    return plain


@pytest.mark.parametrize("mode", ["range", "whole"])
def test_each_format_gives_its_duration(
    audio_server: AudioServer, session: requests.Session, mode: str
) -> None:
    for name, (make, seconds) in FORMATS.items():
        audio_server.files[name] = make(seconds)
        audio_server.modes[name] = mode
        found = probe_duration(audio_server.url(name), session)
        assert found == pytest.approx(seconds, rel=0.01), (name, mode)
    ranges = [r.get("range") for r in audio_server.requests]
    assert ranges == [f"bytes=0-{PROBE_BYTES - 1}"] * len(FORMATS)
    assert not any("authorization" in r or "cookie" in r for r in audio_server.requests)


def test_a_slow_server_is_cut_off_at_the_deadline(
    audio_server: AudioServer, session: requests.Session
) -> None:
    audio_server.files["slow.wav"] = wav_file(3)
    audio_server.modes["slow.wav"] = "trickle"
    started = time.monotonic()
    assert probe_duration(audio_server.url("slow.wav"), session, timeout=2.0) is None
    assert time.monotonic() - started < 10  # not the 3 hours a byte per 0.5 s would take


def test_a_lying_or_broken_server_means_unknown_never_an_error(
    audio_server: AudioServer, session: requests.Session
) -> None:
    audio_server.files["lie.mp3"] = mp3_cbr(10)
    audio_server.modes["lie.mp3"] = "lying"  # claims ten times the bytes it sends
    found = probe_duration(audio_server.url("lie.mp3"), session)
    assert found is None or found > 0  # a wrong answer at worst: it only shapes polling
    audio_server.files["junk.mp3"] = b"<html>not audio</html>"
    assert probe_duration(audio_server.url("junk.mp3"), session) is None
    assert probe_duration(audio_server.url("missing.wav"), session) is None
    assert probe_duration("http://127.0.0.1:9/closed.wav", session) is None
    assert probe_duration("not a url", session) is None


def test_headers_that_lie_about_the_length_are_refused() -> None:
    assert duration_from_bytes(b"RIFF" + bytes(100)) is None
    assert duration_from_bytes(flac_file(10**9)) is None  # over the 48 h cap
    assert duration_from_bytes(b"") is None
