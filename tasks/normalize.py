"""Map the three ``result`` shapes the API answers to one ``Transcript``.

The vendor passes each upstream provider's answer through nearly verbatim, so a completed
job's ``result`` is one of:

* OpenAI-like ``{text, usage}`` (token usage; whisper's verbose form adds ``words``,
  ``segments``, ``duration`` and ``language``, which are used when present);
* Deepgram-like ``{metadata, results: {channels: ...alternatives[0]}}``. The vendor's
  contract draws ``channels`` as one object; real Deepgram sends a list of channels. Both
  are accepted and the first channel is used (the create call cannot ask for multichannel);
* AssemblyAI-like ``{id, status, text, words, utterances, audio_duration}``. As in the real
  AssemblyAI API, word and utterance times are **milliseconds** while ``audio_duration`` is
  **seconds**; everything in a ``Transcript`` is seconds.

The shape is detected from the data; the model's family (listed, or guessed from its id's
prefix) only breaks ties, so a model the catalog does not list still normalizes. A shape
we cannot read is a ``PermanentError``: the job is stored as failed with the keys we saw.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tasks.answers import storable
from tasks.catalog import Family, guess_family
from tasks.errors import PermanentError
from tasks.models import Segment, Transcript, Usage, Word

__all__ = ["MAX_COUNT", "MAX_SECONDS", "detect_family", "normalize"]

log = logging.getLogger(__name__)

_MS = 1000.0
# Token counts are stored in INTEGER columns (32 bits on PostgreSQL).
MAX_COUNT = 2**31 - 1
# Ten years of audio: a longer duration is a broken number, not a recording.
MAX_SECONDS = 10 * 365 * 24 * 3600.0


def _number(value: Any) -> float | None:
    """A finite JSON number as float; ``None`` for anything else (``bool`` is not a number
    here, nor is an integer too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # 10**400
        return None
    return number if math.isfinite(number) else None


def _bounded(name: str, value: Any, limit: float) -> float | None:
    """A usage figure in ``[0, limit]``, or ``None`` with a warning for one that is not.

    The API's figures go to the store's columns and into the cost: NaN, an infinite or
    negative count or one past its column (``10**20`` tokens) is a broken answer's number,
    and keeping it would store a negative cost or make the row unwritable.
    """
    if value is None:
        return None
    number = _number(value)
    if number is None or not 0.0 <= number <= limit:
        shown = repr(value)[:40] if isinstance(value, int | float) else type(value).__name__
        log.warning("usage %s = %s is not a number in [0, %g]: stored as null", name, shown, limit)
        return None
    return number


def _count(name: str, value: Any) -> int | None:
    number = _bounded(name, value, MAX_COUNT)
    return None if number is None else int(number)


def _seconds(name: str, value: Any) -> float | None:
    return _bounded(name, value, MAX_SECONDS)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _speaker(value: Any) -> str | None:
    """Deepgram numbers speakers (0, 1, ...); AssemblyAI letters them ("A", "B", ...)."""
    if value is None or isinstance(value, bool):
        return None
    return str(value)


def _items(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _timed(
    items: Iterable[Mapping[str, Any]],
    text_keys: tuple[str, ...],
    scale: float,
    make: Callable[[str, float, float, Mapping[str, Any]], Any],
) -> list[Any]:
    """Build ``Word``/``Segment`` objects, skipping entries without text or times.

    A malformed entry costs its own timing, not the whole transcript: the text of the job
    comes from the top-level transcript field, never from these lists.
    """
    built, skipped = [], 0
    for item in items:
        text = next((t for k in text_keys if (t := _text(item.get(k))) is not None), None)
        start, end = _number(item.get("start")), _number(item.get("end"))
        if text is None or start is None or end is None:
            skipped += 1
            continue
        built.append(make(text.strip(), round(start / scale, 3), round(end / scale, 3), item))
    if skipped:
        log.debug("skipped %d timed entries without text, start or end", skipped)
    return built


def _word(text: str, start: float, end: float, item: Mapping[str, Any]) -> Word:
    return Word(text, start, end, _number(item.get("confidence")), _speaker(item.get("speaker")))


def _segment(text: str, start: float, end: float, item: Mapping[str, Any]) -> Segment:
    return Segment(text, start, end, _speaker(item.get("speaker")))


# --- OpenAI -------------------------------------------------------------------------------


def _is_openai(result: Mapping[str, Any]) -> bool:
    return isinstance(result.get("text"), str) and "id" not in result and "metadata" not in result


def _openai(result: Mapping[str, Any]) -> Transcript:
    usage = result.get("usage")
    usage = usage if isinstance(usage, Mapping) else {}
    details = usage.get("input_token_details")
    details = details if isinstance(details, Mapping) else {}
    # whisper-1 bills by duration: {"type": "duration", "seconds": 8}
    seconds = _seconds("seconds", usage.get("seconds")) if usage.get("type") == "duration" else None
    duration = _seconds("duration", result.get("duration"))
    return Transcript(
        text=result["text"].strip(),
        words=tuple(_timed(_items(result.get("words")), ("word", "text"), 1.0, _word)),
        segments=tuple(_timed(_items(result.get("segments")), ("text",), 1.0, _segment)),
        language=_text(result.get("language")),
        usage=Usage(
            input_tokens=_count("input_tokens", usage.get("input_tokens")),
            audio_tokens=_count("audio_tokens", details.get("audio_tokens")),
            text_tokens=_count("text_tokens", details.get("text_tokens")),
            output_tokens=_count("output_tokens", usage.get("output_tokens")),
            total_tokens=_count("total_tokens", usage.get("total_tokens")),
            billed_seconds=seconds,
            audio_seconds=duration if duration is not None else seconds,
        ),
    )


# --- Deepgram -----------------------------------------------------------------------------


def _is_deepgram(result: Mapping[str, Any]) -> bool:
    return isinstance(result.get("metadata"), Mapping) or isinstance(result.get("results"), Mapping)


def _paragraphs(node: Any) -> list[Mapping[str, Any]]:
    """Every paragraph object (one that holds ``sentences``) under ``node``.

    The contract nests ``paragraphs: [{transcript, paragraphs: {sentences}}]``; real
    Deepgram nests ``paragraphs: {transcript, paragraphs: [{sentences, speaker}]}``.
    """
    if isinstance(node, list):
        return [p for item in node for p in _paragraphs(item)]
    if isinstance(node, Mapping):
        if isinstance(node.get("sentences"), list):
            return [node]
        return _paragraphs(node.get("paragraphs"))
    return []


def _deepgram(result: Mapping[str, Any]) -> Transcript:
    results = result.get("results")
    channels = results.get("channels") if isinstance(results, Mapping) else None
    channel = channels[0] if isinstance(channels, list) and channels else channels
    channel = channel if isinstance(channel, Mapping) else {}
    alternatives = channel.get("alternatives")
    best = alternatives[0] if isinstance(alternatives, list) and alternatives else None
    if not isinstance(best, Mapping) or not isinstance(best.get("transcript"), str):
        raise PermanentError("deepgram result has no results.channels[0].alternatives[0]")
    segments = []
    for paragraph in _paragraphs(best.get("paragraphs")):
        sentences = _timed(_items(paragraph["sentences"]), ("text",), 1.0, _segment)
        speaker = _speaker(paragraph.get("speaker"))
        segments += [Segment(s.text, s.start, s.end, s.speaker or speaker) for s in sentences]
    metadata = result.get("metadata")
    duration = (
        _seconds("duration", metadata.get("duration")) if isinstance(metadata, Mapping) else None
    )
    return Transcript(
        text=best["transcript"].strip(),
        words=tuple(_timed(_items(best.get("words")), ("punctuated_word", "word"), 1.0, _word)),
        segments=tuple(segments),
        language=_text(channel.get("detected_language")),
        usage=Usage(billed_seconds=duration, audio_seconds=duration),
    )


# --- AssemblyAI ---------------------------------------------------------------------------


def _is_assemblyai(result: Mapping[str, Any]) -> bool:
    return "id" in result and isinstance(result.get("status"), str)


def _assemblyai(result: Mapping[str, Any]) -> Transcript:
    status, text = result.get("status"), result.get("text")
    if status == "error":
        raise PermanentError(f"assemblyai transcript failed: {result.get('error') or 'no reason'}")
    if not isinstance(text, str):
        raise PermanentError(f"assemblyai transcript has no text (status {status!r})")
    duration = _seconds("audio_duration", result.get("audio_duration"))
    return Transcript(
        text=text.strip(),
        words=tuple(_timed(_items(result.get("words")), ("text",), _MS, _word)),
        segments=tuple(_timed(_items(result.get("utterances")), ("text",), _MS, _segment)),
        language=_text(result.get("language_code")),
        usage=Usage(billed_seconds=duration, audio_seconds=duration),
    )


_SHAPES: dict[Family, tuple[Callable[[Mapping[str, Any]], bool], Callable[..., Transcript]]] = {
    Family.DEEPGRAM: (_is_deepgram, _deepgram),
    Family.ASSEMBLYAI: (_is_assemblyai, _assemblyai),
    Family.OPENAI: (_is_openai, _openai),
}


def detect_family(result: Mapping[str, Any], *, hint: Family | None = None) -> Family | None:
    """Which shape ``result`` has; ``hint`` wins when the data fits it too."""
    if hint is not None and _SHAPES[hint][0](result):
        return hint
    return next((family for family, (fits, _) in _SHAPES.items() if fits(result)), None)


def normalize(result: Mapping[str, Any] | None, *, model: str | None = None) -> Transcript:
    """The one ``Transcript`` for a completed job's ``result``, whatever its shape."""
    if result is None:
        raise PermanentError("the job completed without a result")
    if not isinstance(result, Mapping):
        raise PermanentError(f"unknown result shape: a {type(result).__name__}, not an object")
    # Rows landed before answers were cleaned at the boundary may still hold NUL or NaN.
    result = storable(result)
    hint = guess_family(model) if model else None
    family = detect_family(result, hint=hint)
    if family is None:
        keys = ", ".join(sorted(map(str, result))[:20]) or "none"
        raise PermanentError(f"unknown result shape: keys {keys}")
    if hint is not None and family is not hint:
        log.debug("model %s is listed as %s but answered a %s result", model, hint, family)
    return _SHAPES[family][1](result)
