"""Keep the vendor's raw ``result`` without what the normalized columns already hold.

A completed job's row holds the transcript twice: normalized (``text``, ``words``,
``segments``) and inside ``raw_result``, the vendor's answer verbatim, whose word lists
(AssemblyAI's a second time inside each utterance) are most of a row's bytes
(docs/operations.md, "Sizing"). Once ``normalize`` has read the answer, the store keeps
a *slim* copy: the same object without the transcript text, the word list and the
segment list, plus one ``_stt_omitted`` entry that says what was taken out, where it
lives instead, why, and how many bytes it weighed. Everything else the vendor sent
(ids, metadata, usage, flags, confidences) stays as it was.

A list is only dropped when its normalized column holds something: if ``normalize``
could read no word out of a non-empty ``words`` list, the list stays, so nothing is
ever dropped that is stored nowhere else. What the normalized form does not carry is
named per family in ``LOSSY``: the fields inside each dropped element that have no
column of their own (e.g. Deepgram's unpunctuated ``word``).

A result that could not be normalized is never slimmed: it is the evidence of why.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tasks.catalog import Family, family_of
from tasks.models import Transcript
from tasks.normalize import detect_family

__all__ = ["LOSSY", "MARKER", "Omission", "is_slim", "omitted", "slim_result"]

# The key the slim copy records its omissions under; no vendor shape uses it.
MARKER = "_stt_omitted"
REASON = "stored normalized in the job's own column; see tasks/slim.py"


@dataclass(frozen=True, slots=True)
class _Path:
    """One part of a raw result that a normalized column holds."""

    keys: tuple[str | int, ...]  # from the result's root; ints index lists
    column: str  # "text", "words" or "segments"


# Where each family keeps what the columns hold. Deepgram's ``channels`` is a list in the
# real API and an object in the vendor's contract (tasks/normalize.py): both are listed,
# a path that is not there is skipped.
_DG = ("results", "channels")
_DG_BEST = ("alternatives", 0)
_PATHS: dict[Family, tuple[_Path, ...]] = {
    Family.OPENAI: (
        _Path(("text",), "text"),
        _Path(("words",), "words"),
        _Path(("segments",), "segments"),
    ),
    Family.DEEPGRAM: tuple(
        _Path((*_DG, *channel, *_DG_BEST, key), column)
        for channel in ((0,), ())
        for key, column in (
            ("transcript", "text"),
            ("words", "words"),
            ("paragraphs", "segments"),
        )
    ),
    Family.ASSEMBLYAI: (
        _Path(("text",), "text"),
        _Path(("words",), "words"),
        _Path(("utterances",), "segments"),
    ),
}

# Per family, the fields of dropped elements that no column keeps (for the docs and for
# anyone who needs them: keep those in your own code from the callback, or before).
LOSSY: dict[Family, str] = {
    Family.OPENAI: "whisper verbose segments' id, seek, tokens, temperature and log-probs",
    Family.DEEPGRAM: "each word's unpunctuated form and speaker_confidence; "
    "each paragraph's num_words and its sentences' grouping into paragraphs",
    Family.ASSEMBLYAI: "each utterance's confidence and its copy of its words",
}


@dataclass(frozen=True, slots=True)
class Omission:
    """What a slim result says about one part it left out."""

    path: str  # e.g. "results.channels.alternatives[0].words"
    column: str
    bytes: int  # of its compact JSON


def _render(keys: tuple[str | int, ...]) -> str:
    out = ""
    for key in keys:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out


def _parent(root: Any, keys: tuple[str | int, ...]) -> Any:
    """The container that holds ``keys[-1]``, or None if the path is not there."""
    node = root
    for key in keys[:-1]:
        if isinstance(key, int):
            node = node[key] if isinstance(node, list) and len(node) > key else None
        else:
            node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            return None
    return node if isinstance(node, dict) else None


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _held(column: str, value: Any, transcript: Transcript) -> bool:
    """Whether the normalized column keeps what ``value`` held."""
    if column == "text":
        return isinstance(value, str)
    # Lists, except real Deepgram's paragraphs: an object holding the list.
    if not isinstance(value, list | dict):
        return False
    kept = transcript.words if column == "words" else transcript.segments
    return bool(kept) or not value


def slim_result(
    raw: Mapping[str, Any] | None, transcript: Transcript, *, model: str | None = None
) -> dict[str, Any] | None:
    """``raw`` without the parts ``transcript``'s columns hold, and a note of them.

    Returns a new object (``raw`` is not changed); ``raw`` itself, copied, when nothing
    could be left out (an unknown shape, or one already slim).
    """
    if raw is None:
        return None
    hint = family_of(model) if model else None
    family = detect_family(raw, hint=hint)
    slim = copy.deepcopy(dict(raw))
    if family is None or MARKER in slim:
        return slim
    omissions: list[Omission] = []
    for path in _PATHS[family]:
        parent = _parent(slim, path.keys)
        key = path.keys[-1]
        if parent is None or key not in parent or not _held(path.column, parent[key], transcript):
            continue
        value = parent.pop(key)
        omissions.append(Omission(_render(path.keys), path.column, _size(value)))
    if omissions:
        slim[MARKER] = {
            "reason": REASON,
            "family": family.value,
            "omitted": {o.path: o.column for o in omissions},
            "bytes": sum(o.bytes for o in omissions),
        }
    return slim


def is_slim(raw: Mapping[str, Any] | None) -> bool:
    """Whether a stored raw result is a slim copy."""
    return raw is not None and MARKER in raw


def omitted(raw: Mapping[str, Any] | None) -> dict[str, str]:
    """The parts a slim copy left out, path -> the column that holds them ({} if none)."""
    note = raw.get(MARKER) if raw is not None else None
    parts = note.get("omitted") if isinstance(note, Mapping) else None
    return {str(k): str(v) for k, v in parts.items()} if isinstance(parts, Mapping) else {}
