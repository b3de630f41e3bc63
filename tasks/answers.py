"""Decode an API answer within bounds, into values every database can store.

Two hazards sit between the bytes the API sends and the row we write:

* **Shape.** Python's decoder recurses once per nesting level (``[`` x 100,000 raises
  ``RecursionError``, which is not a ``ValueError``) and spends ~50 bytes of memory per value
  it builds (a 16 MiB ``[{},{},...]`` took ~400 MB). ``decode_answer`` measures both on a
  copy of the body with its strings blanked, before decoding: at C speed, with no Python
  object per value. Past ``MAX_JSON_DEPTH`` levels or ``MAX_JSON_ITEMS`` values the answer
  is refused as ``AnswerTooComplex``: a broken or hostile server, not a transcript (an hour
  of audio with word timings nests 6 deep and holds ~200,000 values).
* **Values.** JSON decoders accept ``NaN``, ``Infinity`` and ``1e999`` (infinite), and a
  string may hold ``\\u0000``. PostgreSQL refuses all of them (``json`` has no NaN, ``text``
  no NUL); SQLite stores them and hands back values nothing downstream can use.
  ``storable`` rewrites non-finite numbers as ``null`` and drops NUL characters, so the
  raw result kept in the row is always writable.

Numbers that are finite but absurd (``10**20`` tokens, a negative duration) are a matter of
meaning, not of storage: ``tasks.normalize`` bounds each one where it is read.
"""

from __future__ import annotations

import json
import logging
import math
import re
from functools import partial
from typing import Any

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_JSON_ITEMS",
    "AnswerTooComplex",
    "decode_answer",
    "json_depth",
    "storable",
    "storable_text",
]

log = logging.getLogger(__name__)

# Deeper than any answer of the API (Deepgram's paragraphs: 6) by a wide margin, and far
# below the interpreter's recursion limit, so every recursive walk downstream is safe.
MAX_JSON_DEPTH = 64
# Values (each comma, colon, '[' and '{' starts at most one): a 16 MiB answer of real
# transcript JSON holds < 1,000,000; decoding that many costs at most ~80 MB of memory.
MAX_JSON_ITEMS = 1_000_000

# What the shape checks look at: quotes (to tell strings apart) and structural characters.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{},:')
# Depth does not care which kind of bracket: one kind makes each pass remove one level.
_ONE_BRACKET = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


# A \\uD800-\\uDFFF escape: JSON can spell a lone surrogate, which no UTF-8 encoder takes.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


class AnswerTooComplex(ValueError):
    """The answer nests too deep or holds too many values to decode safely."""


def _skeleton(body: bytes) -> bytes:
    """The body's structural characters outside strings: ``[]{},:`` in order.

    Bytes-level C operations only (no Python object per value): escaped backslashes and
    escaped quotes go first, so every quote left opens or closes a string; splitting on
    the quotes then leaves the text outside strings at the even places.
    """
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    # In valid JSON a structural character always stands between two strings, so an
    # adjacent pair of quotes is one string with nothing structural in it: most of them.
    reduced = unescaped.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    return b"".join(reduced.split(b'"')[::2]) if b'"' in reduced else reduced


def _depth(skeleton: bytes, limit: int) -> int:
    """How deep the brackets nest, counted up to ``limit + 1``.

    Each pass removes the innermost level (every adjacent ``[]``): C speed, and at most
    ``limit + 1`` passes. Brackets that never pair (a cut-off body) count as levels.
    """
    brackets = skeleton.translate(_ONE_BRACKET, _NOT_BRACKETS)
    depth = 0
    while brackets and depth <= limit:
        inner = brackets.replace(b"[]", b"")
        if len(inner) == len(brackets):  # unbalanced: what is left nests by its openers
            return depth + inner.count(b"[")
        brackets, depth = inner, depth + 1
    return depth


def json_depth(body: bytes, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep the brackets of ``body`` nest, strings ignored, counted up to ``limit + 1``."""
    return _depth(_skeleton(body), limit)


def decode_answer(body: bytes | str) -> Any:
    """``json.loads`` within ``MAX_JSON_DEPTH`` and ``MAX_JSON_ITEMS``, made ``storable``.

    Raises ``AnswerTooComplex`` for a body past either bound, ``ValueError`` for one that is
    not JSON at all.
    """
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    skeleton = _skeleton(raw)
    items = sum(skeleton.count(c) for c in (b",", b":", b"[", b"{"))
    if items > MAX_JSON_ITEMS:
        raise AnswerTooComplex(f"answer holds more than {MAX_JSON_ITEMS:,} JSON values")
    if _depth(skeleton, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise AnswerTooComplex(f"answer nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        # NaN, Infinity and numbers too large for a float (1e999) become null as they
        # are read; walking the whole value again is only needed for a NUL.
        nulls: list[str] = []
        value = json.loads(
            raw, parse_constant=nulls.append, parse_float=partial(_finite_or_null, nulls)
        )
    except RecursionError:  # unreachable after the depth check; never a crash all the same
        raise AnswerTooComplex(f"answer nests deeper than {MAX_JSON_DEPTH} levels") from None
    if nulls:
        shown = ", ".join(n[:20] for n in nulls[:3])
        log.warning("the answer held %d non-finite numbers (%s): read as null", len(nulls), shown)
    if b"\\u0000" in raw or _SURROGATE_ESCAPE.search(raw):
        log.warning("the answer held NUL characters or lone surrogates: removed")
        return storable(value)
    return value


def _finite_or_null(nulls: list[str], text: str) -> float | None:
    """A float, or ``None`` (noted in ``nulls``) for one too large to be finite (1e999)."""
    number = float(text)
    if math.isfinite(number):
        return number
    nulls.append(text)
    return None


def storable_text(text: str) -> str:
    """``text`` without NUL characters, which PostgreSQL's text and json types refuse, and
    with lone surrogates (``"\\ud800"`` decodes to one) replaced: no driver can encode them."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def storable(value: Any) -> Any:
    """A decoded JSON value any database accepts: non-finite numbers become ``None``, NUL
    characters leave strings and keys. Values already fine are returned as they are."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [storable(item) for item in value]
    if isinstance(value, dict):
        return {storable_text(str(k)): storable(v) for k, v in value.items()}
    return value
