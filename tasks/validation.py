"""Check a transcription request before anything is enqueued or stored.

Everything a caller can get wrong is caught here, with an ``InvalidInput`` naming the
field, so a bad request never reaches the broker, the database or the API.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tasks.catalog import MAX_MODEL_ID_CHARS, MODEL_ID
from tasks.errors import InvalidInput

__all__ = [
    "MAX_METADATA_BYTES",
    "MAX_PROMPT_CHARS",
    "MAX_URL_CHARS",
    "JobRequest",
    "validate_request",
]

MAX_URL_CHARS = 4096  # presigned S3/GCS URLs run long; 4 KiB is far above any seen
MAX_PROMPT_CHARS = 4000
MAX_METADATA_BYTES = 16 * 1024  # metadata rides in the database row, not the broker
MAX_IDEMPOTENCY_KEY_CHARS = 200
# BCP-47: a 2-3 letter primary tag, optional subtags (en, en-US, zh-Hant-TW, pt-BR).
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


@dataclass(frozen=True, slots=True)
class JobRequest:
    """A validated request: safe to store and enqueue."""

    url: str
    model: str
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    callback_url: str | None = None


def _http_url(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput(name, f"must be a string URL, got {type(value).__name__}")
    value = value.strip()
    if not value:
        raise InvalidInput(name, "must not be empty")
    if len(value) > MAX_URL_CHARS:
        raise InvalidInput(name, f"is longer than {MAX_URL_CHARS} characters")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https"):
        shown = f"{parts.scheme}://" if parts.scheme else value[:40]
        raise InvalidInput(name, f"must be an http(s) URL, got {shown!r}")
    if not parts.hostname:
        raise InvalidInput(name, "has no host")
    return value


def _optional_str(name: str, value: object, *, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(name, f"must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise InvalidInput(name, f"is longer than {limit} characters ({len(value)})")
    return value


def _temperature(value: object) -> float | None:
    if value is None:
        return None
    # bool is an int subclass: True is not a temperature.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput("temperature", f"must be a number in [0, 1], got {value!r}")
    number = float(value)
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise InvalidInput("temperature", f"must be between 0 and 1, got {value!r}")
    return number


def _metadata(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput("metadata", f"must be a JSON object (dict), got {type(value).__name__}")
    if not all(isinstance(k, str) for k in value):
        raise InvalidInput("metadata", "keys must be strings")
    try:
        encoded = json.dumps(dict(value), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput("metadata", f"must be JSON-serializable: {exc}") from None
    if len(encoded.encode()) > MAX_METADATA_BYTES:
        raise InvalidInput("metadata", f"is larger than {MAX_METADATA_BYTES} bytes as JSON")
    loaded: dict[str, Any] = json.loads(encoded)
    return loaded


def validate_request(
    url: object,
    model: object,
    *,
    language: object = None,
    prompt: object = None,
    temperature: object = None,
    metadata: object = None,
    idempotency_key: object = None,
    callback_url: object = None,
) -> JobRequest:
    """Return a ``JobRequest`` or raise ``InvalidInput`` naming the first bad field."""
    checked_url = _http_url("url", url)
    if not isinstance(model, str):
        raise InvalidInput("model", f"must be a string, got {type(model).__name__}")
    # Any well-formed id: the vendor adds models without a release of ours, and its 400
    # names an unknown one better than a list of ours could (the job ends failed with it).
    if len(model) > MAX_MODEL_ID_CHARS or not MODEL_ID.match(model):
        raise InvalidInput(
            "model", f"is not a model id like 'openai/gpt-4o-transcribe', got {model[:60]!r}"
        )
    checked_language = _optional_str("language", language, limit=35)
    if checked_language is not None and not _LANGUAGE.match(checked_language):
        raise InvalidInput(
            "language", f"must be a BCP-47 tag like 'en' or 'en-US', got {language!r}"
        )
    return JobRequest(
        url=checked_url,
        model=model,
        language=checked_language,
        prompt=_optional_str("prompt", prompt, limit=MAX_PROMPT_CHARS),
        temperature=_temperature(temperature),
        metadata=_metadata(metadata),
        idempotency_key=_optional_str(
            "idempotency_key", idempotency_key, limit=MAX_IDEMPOTENCY_KEY_CHARS
        ),
        callback_url=None if callback_url is None else _http_url("callback_url", callback_url),
    )
