"""JSON Schemas for every body the API (or the emulator) sends, from the OpenAPI contract.

The contract is OpenAPI 3.0, whose ``nullable`` keyword JSON Schema does not know. We
convert it (``openapi_to_jsonschema``) with two rules:

* ``{"type": T, "nullable": true, ...}`` becomes ``{"type": [T, "null"], ...}``;
* a bare ``{"nullable": true}`` is, strictly, "anything or null". As one branch of an
  ``anyOf`` that would make the whole ``anyOf`` accept anything (the contract's ``result``
  is such an ``anyOf``), so there it becomes ``{"type": "null"}``: "or null", which is what
  the contract means. Elsewhere (the ``error`` property) it stays "anything".

The contract has no error envelope and no newer ``{id, status, output, error}`` envelope;
both are written here from what the vendor sends. Formats (``uuid``, ``date-time``) are not
asserted: the contract says the create answer's ``generation_id`` is a ``uuid``, but the
vendor's documented example id (``dzIgQQyw8KCfoI5clcbHZ``) is not one.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator

__all__ = [
    "ERROR_ENVELOPE",
    "RESULT_BRANCH",
    "contract",
    "create_response_schema",
    "get_response_schema",
    "openapi_to_jsonschema",
    "validate",
]

CONTRACT_PATH = Path(__file__).with_name("aiml-stt-openapi.json")
Schema = dict[str, Any]


@cache
def contract() -> Schema:
    """The OpenAPI document, parsed once."""
    loaded: Schema = json.loads(CONTRACT_PATH.read_text(encoding="utf-8"))
    return loaded


def openapi_to_jsonschema(node: Any, *, alternative: bool = False) -> Any:
    """A Draft 7 copy of an OpenAPI 3.0 schema node (see the module doc for ``nullable``)."""
    if isinstance(node, list):
        return [openapi_to_jsonschema(item, alternative=alternative) for item in node]
    if not isinstance(node, dict):
        return node
    out: Schema = {}
    for key, value in node.items():
        if key == "nullable":
            continue
        branches = key in ("anyOf", "oneOf")
        if key == "properties":  # property names are not schemas
            out[key] = {name: openapi_to_jsonschema(s) for name, s in value.items()}
        else:
            out[key] = openapi_to_jsonschema(value, alternative=branches)
    if node.get("nullable") is True:
        if "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        elif alternative and len(out) == 0:
            out = {"type": "null"}
    return out


def _schemas() -> Schema:
    converted: Schema = openapi_to_jsonschema(contract()["components"]["schemas"])
    return converted


def create_response_schema() -> Schema:
    """The create answer, as the contract gives it."""
    schema: Schema = _schemas()["Voice.v1.SpeechToTextCreateResponseDTO"]
    return schema


def _statuses(pending: tuple[str, str]) -> list[str]:
    return [*pending, "completed", "error"]


def get_response_schema(dialect: str = "classic") -> Schema:
    """The poll answer for an emulator dialect.

    ``classic`` is the contract's schema unchanged. ``waiting`` swaps its pending status
    words for ``waiting``/``active``. ``v2`` and ``v2-queued`` are the newer envelope
    ``{id, status, output, error: {name, message} | null}`` with the contract's result
    schema as ``output``.
    """
    base: Schema = copy.deepcopy(_schemas()["Voice.v1.SpeechToTextGetResponseDTO"])
    pending = ("waiting", "active") if dialect in ("waiting", "v2") else ("queued", "generating")
    if dialect in ("classic", "waiting"):
        base["properties"]["status"]["enum"] = _statuses(pending)
        return base
    if dialect not in ("v2", "v2-queued"):
        raise ValueError(f"unknown dialect {dialect!r}")
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "string", "enum": _statuses(pending)},
            "output": base["properties"]["result"],
            "error": {
                "anyOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "message": {"type": "string"}},
                        "required": ["name", "message"],
                        "additionalProperties": False,
                    },
                ]
            },
        },
        "required": ["id", "status", "output", "error"],
        "additionalProperties": False,
    }


def _result_branches() -> dict[str, Schema]:
    branches = _schemas()["Voice.v1.SpeechToTextGetResponseDTO"]["properties"]["result"]["anyOf"]
    deepgram, assemblyai, openai, null = branches
    assert null == {"type": "null"}, "the contract's result anyOf changed shape"
    return {"deepgram": deepgram, "assemblyai": assemblyai, "openai": openai}


# Each family's branch of the contract's ``result`` anyOf, to check a result takes the shape
# of *its* family (the anyOf alone would accept a Deepgram body for an OpenAI model).
RESULT_BRANCH: dict[str, Schema] = _result_branches()

# The vendor's error body for 4xx answers (the contract omits it).
ERROR_ENVELOPE: Schema = {
    "type": "object",
    "properties": {
        "message": {"type": "string", "minLength": 1},
        "path": {"type": "string"},
        "requestId": {"type": "string"},
        "statusCode": {"type": "integer"},
        "timestamp": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                "required": ["field", "message"],
            },
        },
    },
    "required": ["message", "path", "requestId", "statusCode", "timestamp"],
    "additionalProperties": False,
}


def validate(instance: Any, schema: Schema) -> None:
    """Raise ``AssertionError`` listing every violation of ``schema`` (Draft 7)."""
    Draft7Validator.check_schema(schema)
    errors = sorted(Draft7Validator(schema).iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        lines = [f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors[:10]]
        raise AssertionError("body violates the schema:\n" + "\n".join(lines))
