"""Reading and validating a create request, JSON or multipart, as the vendor does.

Every problem is collected (not just the first), so the 400 answer's ``errors`` list names
each offending field, the way a NestJS body validator reports them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from workers.emulator.models import Model
from workers.emulator.state import MAX_BODY

__all__ = ["CreateRequest", "FieldError", "ModelLookup", "read_create", "validate"]

FieldError = dict[str, str]  # {"field": ..., "message": ...}
_ABSENT = object()  # a field the body leaves out (unlike one sent as null)


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A valid create call. Exactly one of ``url`` and ``audio`` is set."""

    model: Model
    url: str | None
    audio: bytes | None
    language: str | None
    prompt: str | None
    temperature: float | None

    @property
    def source(self) -> str:
        """The transcript seed and counter key: the URL, or the upload's hex SHA-256."""
        if self.url is not None:
            return self.url
        return hashlib.sha256(self.audio or b"").hexdigest()


ModelLookup = Callable[[str], Model | None]


async def read_create(
    request: web.Request, served: ModelLookup
) -> CreateRequest | list[FieldError]:
    """Parse the body by content type; a list of field errors means answer 400.

    Any body that cannot be parsed is a 400, never a 500: a multipart type without a
    boundary or with a broken body, invalid JSON (whatever the declared type: like the
    vendor's body parser, anything not multipart is read as JSON). A body over the limit
    raises ``HTTPRequestEntityTooLarge``, which the app answers 413 in the vendor's envelope.
    """
    if request.content_type.startswith("multipart/"):
        try:
            fields, audio = await _read_multipart(request)
        except (ValueError, RuntimeError, TypeError, HttpProcessingError) as exc:
            # aiohttp's multipart reader signals a malformed body with these.
            return [{"field": "body", "message": f"multipart body cannot be read: {exc}"}]
        return validate(fields, audio, served, from_form=True)
    try:
        body = json.loads(await request.read() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return [{"field": "body", "message": "body must be valid JSON"}]
    if not isinstance(body, dict):
        return [{"field": "body", "message": "body must be a JSON object"}]
    return validate(body, None, served, from_form=False)


async def _read_multipart(request: web.Request) -> tuple[dict[str, Any], bytes | None]:
    fields: dict[str, Any] = {}
    audio: bytes | None = None
    limit, total = request.app[MAX_BODY], 0
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader) or not part.name:
            continue
        data = await part.read()  # each part is held to the limit by aiohttp...
        total += len(data)
        if total > limit:  # ...and all of them together, here
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=total)
        if part.name == "audio":
            audio = bytes(data)
        else:
            fields[part.name] = bytes(data).decode("utf-8", errors="replace")
    return fields, audio


def validate(
    body: Mapping[str, Any], audio: bytes | None, served: ModelLookup, *, from_form: bool
) -> CreateRequest | list[FieldError]:
    """Check ``model``, ``url`` (unless audio was uploaded), ``temperature``, ``language``
    and ``prompt``. Form fields arrive as strings, so ``temperature`` is parsed there."""
    errors: list[FieldError] = []

    model_id = body.get("model")
    model = served(model_id) if isinstance(model_id, str) else None
    if model_id is None:
        errors.append({"field": "model", "message": "model is required"})
    elif model is None:
        errors.append({"field": "model", "message": f"model {model_id!r} is not supported"})

    url = body.get("url")
    if audio is None:
        if url is None:
            errors.append({"field": "url", "message": "url is required"})
        elif not _http_url(url):
            errors.append({"field": "url", "message": "url must be an http(s) URL"})
    elif from_form and not audio:
        errors.append({"field": "audio", "message": "audio file is empty"})

    # An optional field may be left out, not sent as null: the contract's types are not
    # nullable (our client leaves out what it does not set).
    temperature = _temperature(body.get("temperature", _ABSENT), from_form, errors)
    texts: dict[str, str | None] = {}
    for name in ("language", "prompt"):
        value = body.get(name, _ABSENT)
        if value is not _ABSENT and not isinstance(value, str):
            errors.append({"field": name, "message": f"{name} must be a string"})
        texts[name] = value if isinstance(value, str) else None

    if errors or model is None:
        return errors
    return CreateRequest(
        model=model,
        url=url if audio is None else None,
        audio=audio,
        language=texts["language"],
        prompt=texts["prompt"],
        temperature=temperature,
    )


def _http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _temperature(value: Any, from_form: bool, errors: list[FieldError]) -> float | None:
    if value is _ABSENT:
        return None
    if from_form and isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        errors.append({"field": "temperature", "message": "temperature must be a number"})
        return None
    if not 0 <= value <= 1:
        errors.append({"field": "temperature", "message": "temperature must be between 0 and 1"})
        return None
    return float(value)
