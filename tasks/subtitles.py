"""SubRip (``.srt``) and WebVTT (``.vtt``) subtitles from a ``Transcript``.

Cues come from the best timing the model gave:

1. its segments (Deepgram sentences, AssemblyAI utterances, whisper segments). A segment
   longer than ``MAX_CUE_SECONDS`` or two lines (``2 * MAX_CUE_CHARS``) is re-cut from the
   words inside it when there are any: an utterance can run for minutes;
2. else its words, grouped into cues of at most ``MAX_CUE_SECONDS`` and ``MAX_CUE_CHARS``
   (the usual one-line subtitle limits);
3. else, for a text-only answer (the OpenAI gpt-4o models give no timings), one cue from
   0 to the audio's duration when the usage knows it.

With neither timings nor a duration there is nothing honest to put in a timestamp, so
``NoTimingsError`` (a ``ValueError``) says so rather than inventing one. An empty
transcript gives a file without cues.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tasks.models import Segment, Transcript, Word

__all__ = ["MAX_CUE_CHARS", "MAX_CUE_SECONDS", "Cue", "NoTimingsError", "cues", "to_srt", "to_vtt"]

MAX_CUE_SECONDS = 7.0
MAX_CUE_CHARS = 42


class NoTimingsError(ValueError):
    """The transcript has text but no word, segment or duration timing to place it."""


@dataclass(frozen=True, slots=True)
class Cue:
    start: float
    end: float
    text: str
    speaker: str | None = None


def _clean(text: str) -> str:
    """One line: a blank line would end the cue early in both formats."""
    return " ".join(text.split())


def _group_words(words: Iterable[Word]) -> list[Cue]:
    """Greedy grouping: a word that would overflow the cue's length or span starts a new one.

    A change of speaker also starts a new cue, so each cue has one voice.
    """
    out: list[Cue] = []
    current: list[Word] = []

    def flush() -> None:
        if current:
            text = " ".join(w.text for w in current)
            out.append(Cue(current[0].start, current[-1].end, text, current[0].speaker))
            current.clear()

    for word in words:
        if current:
            length = sum(len(w.text) + 1 for w in current) + len(word.text)
            too_long = length > MAX_CUE_CHARS or word.end - current[0].start > MAX_CUE_SECONDS
            if too_long or word.speaker != current[0].speaker:
                flush()
        current.append(word)
    flush()
    return out


def _from_segments(segments: Iterable[Segment], words: Sequence[Word]) -> list[Cue]:
    """One cue per segment that fits on screen; the words of one that does not, grouped."""
    words = sorted(words, key=lambda w: w.start)
    starts = [w.start for w in words]
    out: list[Cue] = []
    for seg in segments:
        fits = seg.end - seg.start <= MAX_CUE_SECONDS and len(seg.text) <= 2 * MAX_CUE_CHARS
        inside = (
            [] if fits else words[bisect_left(starts, seg.start) : bisect_left(starts, seg.end)]
        )
        if not inside:
            out.append(Cue(seg.start, seg.end, seg.text, seg.speaker))
            continue
        for cue in _group_words(inside):
            out.append(Cue(cue.start, cue.end, cue.text, cue.speaker or seg.speaker))
    return out


def cues(transcript: Transcript) -> list[Cue]:
    """The cues both formats are written from, in time order, with clean one-line text."""
    if transcript.segments:
        raw = _from_segments(transcript.segments, transcript.words)
    elif transcript.words:
        raw = _group_words(transcript.words)
    elif not transcript.text.strip():
        raw = []
    else:
        usage = transcript.usage
        duration = usage.audio_seconds if usage.audio_seconds is not None else usage.billed_seconds
        if not duration or duration <= 0:
            raise NoTimingsError(
                "the model gave no word or segment timings and no audio duration, "
                "so the transcript cannot be placed in time; use the text format"
            )
        raw = [Cue(0.0, duration, transcript.text)]
    out = []
    for cue in sorted(raw, key=lambda c: c.start):
        text = _clean(cue.text)
        if text:
            start = max(0.0, cue.start)
            out.append(Cue(start, max(start, cue.end), text, cue.speaker))
    return out


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_srt(transcript: Transcript) -> str:
    """SubRip text: numbered cues, ``00:00:01,234`` times, a speaker as ``A: `` prefix."""
    blocks = []
    for number, cue in enumerate(cues(transcript), start=1):
        text = f"{cue.speaker}: {cue.text}" if cue.speaker else cue.text
        span = f"{_timestamp(cue.start, ',')} --> {_timestamp(cue.end, ',')}"
        blocks.append(f"{number}\n{span}\n{text}\n")
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    # "&" and "<" start markup in WebVTT cue text; "-->" would read as a timing line.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(transcript: Transcript) -> str:
    """WebVTT text: ``WEBVTT`` header, ``00:00:01.234`` times, a speaker as a ``<v>`` tag."""
    blocks = ["WEBVTT\n"]
    for cue in cues(transcript):
        text = _vtt_escape(cue.text)
        if cue.speaker:
            text = f"<v {_vtt_escape(cue.speaker)}>{text}"
        blocks.append(f"{_timestamp(cue.start, '.')} --> {_timestamp(cue.end, '.')}\n{text}\n")
    return "\n".join(blocks)
