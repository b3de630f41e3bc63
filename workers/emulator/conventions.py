"""Markers in an audio URL that force an outcome, so a test can pick one without faults.

Random faults hit whichever request the dice choose; a test that wants *this* job to fail
puts a marker in its audio URL instead (anywhere: path, query or fragment):

``force-error``
    the job goes through the pending states and ends in status ``error``.
``force-empty``
    the job completes with an empty transcript (no words).
``force-duration-<seconds>``
    the audio is that long (e.g. ``force-duration-42.5``), whatever the URL or file says.
``force-http-<code>`` / ``force-http-<code>x<n>``
    ``POST /v1/stt/create`` for this URL answers ``<code>`` (always, or for the first ``n``
    create calls of this URL, then normally); no job is created by a forced answer.
``force-poll-<code>`` / ``force-poll-<code>x<n>``
    ``GET /v1/stt/{id}`` for the job answers ``<code>`` (always, or for its first ``n`` polls).
``force-status-<word>``
    every poll answers status ``<word>`` (lower-case letters and ``_``), a word no vendor
    page uses: the job never finishes, as far as the client can tell.
``force-answer-<kind>``
    once the job is completed its polls answer a broken 201: ``not-json`` (cut off),
    ``no-status`` (the envelope without ``status``), ``unknown-shape`` (a ``result`` of
    no known family) or ``huge`` (a valid result padded past 16 MiB).
``force-scripted-<name>``
    every poll of the job answers the bytes registered under ``<name>`` (letters, digits,
    ``_``) with ``POST /_emulator/answers/<name>``, verbatim: a test crafts any answer,
    however hostile (unknown name: the poll answers 404).

Codes 429 carry ``Retry-After: 1``; 502/503/504 come as the HTML page a gateway sends; any
other 4xx/5xx comes in the vendor's JSON error envelope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ANSWER_KINDS", "ForcedStatus", "Forcing", "forcing_for"]

_DURATION = re.compile(r"force-duration-(\d+(?:\.\d+)?)")
_CREATE_HTTP = re.compile(r"force-http-([45]\d\d)(?:x(\d+))?")
_POLL_HTTP = re.compile(r"force-poll-([45]\d\d)(?:x(\d+))?")
_STATUS_WORD = re.compile(r"force-status-([a-z_]+)")
_SCRIPTED = re.compile(r"force-scripted-([A-Za-z0-9_]+)")
ANSWER_KINDS = ("not-json", "no-status", "unknown-shape", "huge")
_ANSWER = re.compile(r"force-answer-(" + "|".join(ANSWER_KINDS) + ")")


@dataclass(frozen=True, slots=True)
class ForcedStatus:
    """Answer ``status`` for the first ``times`` calls (every call when ``times`` is None)."""

    status: int
    times: int | None

    def applies(self, call_number: int) -> bool:
        """``call_number`` counts from 1 and includes the current call."""
        return self.times is None or call_number <= self.times


@dataclass(frozen=True, slots=True)
class Forcing:
    """What the markers in one URL ask for; the default forces nothing."""

    error: bool = False
    empty: bool = False
    duration: float | None = None
    create: ForcedStatus | None = None
    poll: ForcedStatus | None = None
    status_word: str | None = None
    answer: str | None = None  # one of ANSWER_KINDS
    scripted: str | None = None  # the name of an answer registered through the admin API


NOTHING = Forcing()


def forcing_for(url: str | None) -> Forcing:
    """Parse the ``force-...`` markers in ``url`` (``None`` for an upload: no markers)."""
    if not url or "force-" not in url:
        return NOTHING
    duration = _DURATION.search(url)
    word, answer = _STATUS_WORD.search(url), _ANSWER.search(url)
    scripted = _SCRIPTED.search(url)
    return Forcing(
        error="force-error" in url,
        empty="force-empty" in url,
        duration=float(duration.group(1)) if duration else None,
        create=_status(_CREATE_HTTP.search(url)),
        poll=_status(_POLL_HTTP.search(url)),
        status_word=word.group(1) if word else None,
        answer=answer.group(1) if answer else None,
        scripted=scripted.group(1) if scripted else None,
    )


def _status(match: re.Match[str] | None) -> ForcedStatus | None:
    if match is None:
        return None
    times = match.group(2)
    return ForcedStatus(int(match.group(1)), int(times) if times else None)
