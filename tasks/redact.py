"""Make values safe to keep and show: no secrets, no presigned query strings, no escapes.

Text from outside (the API's answers, callback receivers' replies) passes here before it
is kept or shown: ``scrub_secret``/``scrub_json`` take the API key out of it in every form
a server could echo it (raw, JSON-escaped, repr-escaped); ``neutralize`` makes control
characters visible (``\\x1b``) so a terminal never runs an escape sequence and a log line
cannot be forged with a newline.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "ControlCharFilter",
    "json_safe",
    "neutralize",
    "redact_text",
    "redact_url",
    "scrub_json",
    "scrub_secret",
]

SCRUBBED = "***"
# C0 and C1 controls, DEL, and the Unicode characters that move or reorder what a terminal
# shows (line/paragraph separators, bidi overrides and isolates: "Trojan Source").
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_CONTROL_BUT_LINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]"
)
# In JSON text, these can only be inside strings (json.dumps escapes C0 itself).
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def neutralize(text: str, *, keep_lines: bool = False) -> str:
    """``text`` with every control character shown as an escape (ESC -> ``\\x1b``).

    ``keep_lines`` keeps newlines and tabs (a transcript printed whole); carriage returns
    are always escaped, since they let text overwrite the line before them.
    """
    pattern = _CONTROL_BUT_LINES if keep_lines else _CONTROL
    return pattern.sub(_escape, text) if pattern.search(text) else text


def json_safe(encoded: str) -> str:
    """JSON text (``ensure_ascii=False``) with C1 controls and bidi marks as ``\\uXXXX``."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", encoded)


@lru_cache(maxsize=8)
def _secret_pattern(secret: str) -> re.Pattern[str]:
    """``secret`` in every way a server can echo it in text: each character as itself, as a
    JSON ``\\uXXXX`` escape (any case), ``/`` as ``\\/``, ``\\`` doubled (JSON, repr)."""
    parts = []
    for char in secret:
        forms = [re.escape(char), f"(?i:\\\\u{ord(char):04x})"]
        if char == "/":
            forms.append(r"\\/")
        elif char == "\\":
            forms.append(r"\\\\")
        parts.append("(?:" + "|".join(forms) + ")")
    return re.compile("".join(parts))


def scrub_secret(text: str, secret: str | None) -> str:
    """``text`` without ``secret`` in any form ``_secret_pattern`` matches."""
    if not secret:
        return text
    return _secret_pattern(secret).sub(SCRUBBED, text)


def scrub_json(value: Any, secret: str | None) -> Any:
    """Decoded JSON with ``secret`` scrubbed from every string in it, keys included.

    The raw-bytes scrub misses a key a server echoed with JSON escapes
    (``sk-live\\/AbC``): decoding turns it back into the key. Run this after decoding.
    """
    if not secret:
        return value
    if isinstance(value, str):
        return scrub_secret(value, secret)
    if isinstance(value, dict):
        return {scrub_secret(str(k), secret): scrub_json(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_json(v, secret) for v in value]
    return value


class ControlCharFilter(logging.Filter):
    """A handler filter: control characters in a record's message and string arguments are
    shown as escapes, so outside text (a generation id, a receiver's reply) cannot forge a
    log line or send escape sequences to whoever tails the log. Our own format strings
    carry none, so nothing of ours changes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = neutralize(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _clean_arg(v) for k, v in record.args.items()}
        return True


def _clean_arg(value: Any) -> Any:
    if isinstance(value, str):
        return neutralize(value)
    if isinstance(value, BaseException):
        text = str(value)
        return neutralize(text) if _CONTROL.search(text) else value
    return value


# A URL inside free text (an error message, a log line): scheme://, then up to whitespace
# or a quote. Only the query, fragment and user:password are cut, so the text stays useful.
_URL_IN_TEXT = re.compile(r"""[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'"<>]+""")


def redact_url(url: str) -> str:
    """Drop the query string and fragment (presigned URLs carry credentials there)
    and any user:password in the authority."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:  # not a number: keep nothing of it
        port = None
    if port:
        host = f"{host}:{port}"
    query = "<redacted>" if parts.query else ""
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def redact_text(text: str) -> str:
    """``text`` with every URL in it passed through ``redact_url``.

    Server error messages may quote the audio URL they could not fetch; this is applied
    where such text enters (``tasks.client``) and where task arguments are shown.
    """

    def one(match: re.Match[str]) -> str:
        url = match.group(0)
        kept = url.rstrip(".,;:)]}")  # sentence punctuation after a URL is not part of it
        return redact_url(kept) + url[len(kept) :]

    return _URL_IN_TEXT.sub(one, text)
