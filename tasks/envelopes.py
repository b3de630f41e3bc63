"""The API's answers, parsed at the boundary: envelopes, error bodies, ``Retry-After``.

Pure functions over status codes, headers and decoded JSON, with no HTTP in them, so every
quirk of the contract (the GET answering 201, two envelope styles, three error-body shapes,
``Retry-After`` as seconds or an HTTP date) is unit-testable from literals. ``tasks.client``
does the I/O and hands what it received here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from tasks.answers import decode_answer, storable_text
from tasks.errors import PermanentError, STTError, TransientError
from tasks.models import Generation
from tasks.redact import redact_text

__all__ = [
    "MAX_ERROR_BODY_BYTES",
    "MAX_MESSAGE_CHARS",
    "SNIPPET_CHARS",
    "error_from_response",
    "header",
    "parse_generation",
    "parse_retry_after",
    "truncate",
]

# Exception messages end up in the store, in logs and in Flower: keep them short.
MAX_MESSAGE_CHARS = 500
# How much of an error body we read at all; the rest is not worth the memory.
MAX_ERROR_BODY_BYTES = 64 * 1024
SNIPPET_CHARS = 200
_TRANSIENT_STATUSES = frozenset({408, 429})
# What a reader of a failed job wants to know besides the vendor's words (HTTP n follows).
_REASONS = {401: "unauthorized (check AIML_API_KEY)", 408: "request timeout", 429: "rate limited"}


def truncate(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Collapse whitespace (one log line per error) and cut to ``limit`` characters.

    Every server-provided message passes here, so URLs in it lose their query strings
    (a server quoting the presigned audio URL it could not fetch must not leak it), and
    NUL characters go (the store's text columns refuse them on PostgreSQL).
    """
    text = redact_text(" ".join(storable_text(text).split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup that also works on a plain ``dict``."""
    name = name.lower()
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date).

    A date in the past gives 0; garbage gives ``None``. Capping a huge value is the
    schedule's job (``tasks.polling``), not the parser's.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN or infinite
        return None
    return max(0.0, seconds)


def _error_detail(data: Any) -> str | None:
    """The human part of the vendor's error envelope, with any ``errors`` detail list."""
    if not isinstance(data, dict):
        return None
    message = data.get("message")
    if message is None and isinstance(data.get("error"), dict):
        message = data["error"].get("message")
    elif message is None:
        message = data.get("error")
    if isinstance(message, list):  # NestJS validation pipes send a list of messages
        message = "; ".join(str(m) for m in message)
    parts = [str(message)] if message not in (None, "") else []
    errors = data.get("errors")
    if isinstance(errors, list) and errors:
        details = [
            str(e.get("message", json.dumps(e))) if isinstance(e, dict) else str(e)
            for e in errors[:10]
        ]
        parts.append("(" + "; ".join(details) + ")")
    return " ".join(parts) or None


def error_from_response(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    now: float | None = None,
) -> STTError:
    """The one mapping from a non-2xx answer to our error taxonomy.

    408, 429 and every 5xx are ``TransientError`` (with ``Retry-After`` in seconds when
    the server sent one); everything else, 4xx first of all, is ``PermanentError``.
    """
    if isinstance(body, bytes):
        body = body[:MAX_ERROR_BODY_BYTES].decode("utf-8", errors="replace")
    else:
        body = body[:MAX_ERROR_BODY_BYTES]
    try:
        data: Any = decode_answer(body)  # bounded: an error body may nest 64 KiB deep
    except ValueError:
        data = None
    detail = _error_detail(data)
    if detail is None:
        detail = truncate(body, SNIPPET_CHARS) if body.strip() else "empty body"
    reason = _REASONS.get(status_code, "server error" if status_code >= 500 else "rejected")
    message = truncate(f"{reason}: {detail}")
    body_id = data.get("requestId") if isinstance(data, dict) else None
    request_id = body_id if isinstance(body_id, str) and body_id else None
    request_id = request_id or header(headers, "x-request-id") or header(headers, "request-id")
    if status_code in _TRANSIENT_STATUSES or 500 <= status_code <= 599:
        retry_after = parse_retry_after(header(headers, "retry-after"), now=now)
        return TransientError(
            message, status_code=status_code, request_id=request_id, retry_after=retry_after
        )
    return PermanentError(message, status_code=status_code, request_id=request_id)


def _error_text(error: Any) -> str | None:
    """The envelope's ``error`` as one string: text, ``{name, message}`` or ``null``."""
    if error is None or error == "":
        return None
    if isinstance(error, str):
        return truncate(error)
    if isinstance(error, dict):
        name, message = error.get("name"), error.get("message")
        if name and message:
            return truncate(f"{name}: {message}")
        if name or message:
            return truncate(str(name or message))
    return truncate(json.dumps(error, default=str))


def parse_generation(
    body: object, *, request_id: str | None = None, default_status: str | None = None
) -> Generation:
    """Parse either envelope the vendor uses into a ``Generation``.

    Legacy: ``{generation_id, status, result, error}``; newer: ``{id, status, output,
    error: {name, message} | null}``. A status word we do not know is kept verbatim (its
    ``phase`` is pending). ``default_status`` covers the create answer, whose schema
    requires only the id. Anything else is a ``PermanentError``: retrying cannot fix it.
    """

    def malformed(why: str) -> PermanentError:
        return PermanentError(f"malformed answer: {why}", request_id=request_id)

    if not isinstance(body, dict):
        raise malformed(f"expected a JSON object, got {type(body).__name__}")
    keys = truncate(", ".join(sorted(map(str, body))), 120)
    generation_id = body.get("generation_id") or body.get("id")
    if not isinstance(generation_id, str):
        raise malformed(f"no generation id (keys: {keys})")
    status = body.get("status", default_status)
    if not isinstance(status, str) or not status:
        raise malformed(f"missing or non-string status (keys: {keys})")
    result = body.get("result")
    if result is None:
        result = body.get("output")
    if result is not None and not isinstance(result, dict):
        raise malformed(f"result is a {type(result).__name__}, not an object")
    body_id = body.get("requestId")
    if request_id is None and isinstance(body_id, str) and body_id:
        request_id = body_id
    return Generation(
        generation_id=generation_id,
        status=status,
        result=result,
        error=_error_text(body.get("error")),
        request_id=request_id,
    )
