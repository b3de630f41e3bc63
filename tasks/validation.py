"""Check a transcription request before anything is enqueued or stored.

Everything a caller can get wrong is caught here, with an ``InvalidInput`` naming the
field, so a bad request never reaches the broker, the database or the API. A message
never quotes the value it refuses: a URL may be presigned, a prompt or a key private, and
the message goes to logs and to the web app's caller.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tasks.catalog import MAX_MODEL_ID_CHARS, MODEL_ID
from tasks.errors import InvalidInput
from tasks.netguard import check_callback_url
from tasks.probe import MAX_DURATION
from tasks.settings import IPNetwork

__all__ = [
    "FINGERPRINT_FIELDS",
    "MAX_DURATION",
    "MAX_METADATA_BYTES",
    "MAX_METADATA_DEPTH",
    "MAX_PROMPT_CHARS",
    "MAX_TENANT_CHARS",
    "MAX_URL_CHARS",
    "JobRequest",
    "fingerprint_of",
    "request_fingerprint",
    "validate_request",
]

MAX_URL_CHARS = 4096  # presigned S3/GCS URLs run long; 4 KiB is far above any seen
MAX_PROMPT_CHARS = 4000
MAX_METADATA_BYTES = 16 * 1024  # metadata rides in the database row, not the broker
MAX_IDEMPOTENCY_KEY_CHARS = 200
MAX_TENANT_CHARS = 200
# Deeper than any sensible metadata, far below the recursion limit json.dumps runs into.
MAX_METADATA_DEPTH = 32
# BCP-47: a 2-3 letter primary tag, optional subtags (en, en-US, zh-Hant-TW, pt-BR).
# Matched with fullmatch: "$" would also match before a trailing newline ("en\n").
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*")
# C0 controls and DEL: never part of a URL or an identifier.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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
    tenant: str | None = None
    # The audio's length in seconds, if the caller knows it: a hint for the poll schedule
    # (docs/polling.md), not a parameter of the transcription, so not in the fingerprint.
    duration: float | None = None

    @property
    def fingerprint(self) -> str:
        """What an idempotency key is compared on when it comes again (not the key, not
        the tenant: those are what it is looked up by)."""
        return fingerprint_of(self)


FINGERPRINT_FIELDS = (
    "url",
    "model",
    "language",
    "prompt",
    "temperature",
    "metadata",
    "callback_url",
)


def fingerprint_of(source: Any) -> str:
    """``request_fingerprint`` of any object with the ``FINGERPRINT_FIELDS`` attributes (a
    request, or a stored job)."""
    return request_fingerprint(**{name: getattr(source, name) for name in FINGERPRINT_FIELDS})


def request_fingerprint(
    *,
    url: str,
    model: str,
    language: str | None,
    prompt: str | None,
    temperature: float | None,
    metadata: Mapping[str, Any] | None,
    callback_url: str | None,
) -> str:
    """SHA-256 of a request's parameters, as canonical JSON (sorted keys, no spaces).

    A function of the stored columns too, so a row written before fingerprints were
    stored is compared the same way.
    """
    parameters = {
        "url": url,
        "model": model,
        "language": language,
        "prompt": prompt,
        "temperature": temperature,
        "metadata": dict(metadata or {}),
        "callback_url": callback_url,
    }
    canonical = json.dumps(parameters, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _http_url(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput(name, f"must be a string URL, got {type(value).__name__}")
    value = value.strip()
    if not value:
        raise InvalidInput(name, "must not be empty")
    if len(value) > MAX_URL_CHARS:
        raise InvalidInput(name, f"is longer than {MAX_URL_CHARS} characters")
    if _CONTROL.search(value):
        raise InvalidInput(name, "contains control characters (NUL, CR, LF, ...)")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https"):
        got = f", got {parts.scheme.lower()[:10]!r}" if parts.scheme.isalpha() else ""
        raise InvalidInput(name, f"must be an http(s) URL{got}")
    if not parts.hostname:
        raise InvalidInput(name, "has no host")
    return value


def _optional_str(name: str, value: object, *, limit: int, controls: bool = True) -> str | None:
    """A string within ``limit``; never with NUL (no database column takes it), and
    without any control character unless ``controls`` (a prompt may hold newlines)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(name, f"must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise InvalidInput(name, f"is longer than {limit} characters ({len(value)})")
    if "\x00" in value:
        raise InvalidInput(name, "contains a NUL character")
    if not controls and _CONTROL.search(value):
        raise InvalidInput(name, "contains control characters")
    return value


def _temperature(value: object) -> float | None:
    if value is None:
        return None
    # bool is an int subclass: True is not a temperature.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput("temperature", f"must be a number in [0, 1], got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise InvalidInput("temperature", "must be between 0 and 1")
    return number


def _duration(value: object) -> float | None:
    """Seconds of audio: a finite number in (0, ``MAX_DURATION``], the probe's own bound."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput("duration", f"must be a number of seconds, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or not 0.0 < number <= MAX_DURATION:
        raise InvalidInput(
            "duration", f"must be a number of seconds above 0 and at most {MAX_DURATION:.0f}"
        )
    return number


def _check_tree(value: object) -> None:
    """Depth and NUL checks over metadata, without recursion (5,000 levels must not crash)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                raise InvalidInput("metadata", "contains a NUL character")
            continue
        if not isinstance(node, Mapping | list | tuple):
            continue
        if depth > MAX_METADATA_DEPTH:
            raise InvalidInput("metadata", f"nests deeper than {MAX_METADATA_DEPTH} levels")
        if isinstance(node, Mapping):
            stack.extend((key, depth) for key in node)
            stack.extend((item, depth + 1) for item in node.values())
        else:
            stack.extend((item, depth + 1) for item in node)
        if len(stack) > MAX_METADATA_BYTES:  # more values than its bytes could hold
            raise InvalidInput("metadata", f"is larger than {MAX_METADATA_BYTES} bytes as JSON")


def _metadata(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput("metadata", f"must be a JSON object (dict), got {type(value).__name__}")
    if not all(isinstance(k, str) for k in value):
        raise InvalidInput("metadata", "keys must be strings")
    _check_tree(value)
    try:
        encoded = json.dumps(dict(value), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        # The exception's text may quote the value: say only what kind of value it was.
        raise InvalidInput(
            "metadata", f"must be JSON-serializable ({type(exc).__name__})"
        ) from None
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
    callback_allow: Sequence[IPNetwork] = (),
    tenant: object = None,
    duration: object = None,
) -> JobRequest:
    """Return a ``JobRequest`` or raise ``InvalidInput`` naming the first bad field.

    ``callback_url`` must reach a public address, or one in ``callback_allow``
    (``STT_CALLBACK_ALLOW_NETWORKS``; see ``tasks.netguard``).
    """
    checked_url = _http_url("url", url)
    if not isinstance(model, str):
        raise InvalidInput("model", f"must be a string, got {type(model).__name__}")
    # Any well-formed id: the vendor adds models without a release of ours, and its 400
    # names an unknown one better than a list of ours could (the job ends failed with it).
    # fullmatch: MODEL_ID's "$" would also match before a trailing newline.
    if len(model) > MAX_MODEL_ID_CHARS or not MODEL_ID.fullmatch(model):
        raise InvalidInput("model", "is not a model id like 'openai/gpt-4o-transcribe'")
    checked_language = _optional_str("language", language, limit=35)
    if checked_language is not None and not _LANGUAGE.fullmatch(checked_language):
        raise InvalidInput("language", "must be a BCP-47 tag like 'en' or 'en-US'")
    return JobRequest(
        url=checked_url,
        model=model,
        language=checked_language,
        prompt=_optional_str("prompt", prompt, limit=MAX_PROMPT_CHARS, controls=True),
        temperature=_temperature(temperature),
        metadata=_metadata(metadata),
        idempotency_key=_optional_str(
            "idempotency_key", idempotency_key, limit=MAX_IDEMPOTENCY_KEY_CHARS, controls=False
        ),
        callback_url=None
        if callback_url is None
        else check_callback_url(
            "callback_url", _http_url("callback_url", callback_url), callback_allow
        ),
        tenant=_optional_str("tenant", tenant, limit=MAX_TENANT_CHARS, controls=False),
        duration=_duration(duration),
    )
