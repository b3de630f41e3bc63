"""Encoded answer bodies: job envelopes in each dialect, vendor errors, gateway pages.

Polls dominate the traffic, so a job's answer is encoded once per (dialect, phase) and the
bytes are reused; a poll then costs a dict lookup, not a JSON encode.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from workers.emulator.config import Dialect
from workers.emulator.jobs import Job, Phase
from workers.emulator.results import build_result

__all__ = [
    "MALFORMED_CREATE",
    "create_body",
    "dumps",
    "forced_answer",
    "gateway_page",
    "job_body",
    "malformed_poll",
    "status_word",
    "vendor_error",
]

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

_MESSAGES = {
    400: "Body validation error!",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "ThrottlerException: Too Many Requests",
    500: "Internal server error",
}
_REASONS = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}
# What a client sees when the body is cut off mid-stream: a 201 that does not parse.
MALFORMED_CREATE = b'{"generation_id":"'


def dumps(value: Any) -> bytes:
    return _encoder.encode(value).encode("utf-8")


def status_word(phase: Phase, dialect: Dialect) -> str:
    if phase is Phase.QUEUED:
        return dialect.pending_words[0]
    if phase is Phase.GENERATING:
        return dialect.pending_words[1]
    return phase.value


def create_body(job: Job, dialect: Dialect) -> bytes:
    """The create answer: the id and the first pending status, as the doc's example shows."""
    key = "id" if dialect.new_envelope else "generation_id"
    return dumps({key: job.generation_id, "status": dialect.pending_words[0]})


def job_body(job: Job, phase: Phase, dialect: Dialect) -> bytes:
    """The poll answer for ``job`` in ``phase``, cached on the job."""
    cache_key = (dialect.value, phase)
    body = job.bodies.get(cache_key)
    if body is None:
        body = dumps(_envelope(job, phase, dialect))
        job.bodies[cache_key] = body
    return body


def _envelope(job: Job, phase: Phase, dialect: Dialect) -> dict[str, Any]:
    result = build_result(job) if phase is Phase.COMPLETED else None
    message = job.error_message if phase is Phase.ERROR else None
    if dialect.new_envelope:
        return {
            "id": job.generation_id,
            "status": status_word(phase, dialect),
            "output": result,
            "error": {"name": "TranscriptionError", "message": message} if message else None,
        }
    return {
        "generation_id": job.generation_id,
        "status": status_word(phase, dialect),
        "result": result,
        "error": message,
    }


# Past the client's 16 MiB cap on an answer (tasks.client.MAX_ANSWER_BYTES).
HUGE_ANSWER_BYTES = 17 * 1024 * 1024


def forced_answer(job: Job, phase: Phase, dialect: Dialect) -> bytes | None:
    """The broken answer a ``force-status-`` or ``force-answer-`` marker asks for, if any."""
    forcing = job.forcing
    if forcing.status_word is not None:
        envelope = _envelope(job, Phase.QUEUED, dialect)
        envelope["status"] = forcing.status_word
        return dumps(envelope)
    if forcing.answer is None or not phase.final:
        return None
    if forcing.answer == "not-json":
        return malformed_poll(job.generation_id)
    envelope = _envelope(job, phase, dialect)
    result_key = "output" if dialect.new_envelope else "result"
    if forcing.answer == "no-status":
        del envelope["status"]
    elif forcing.answer == "unknown-shape":
        envelope[result_key] = {"transcription": {"segments": []}, "engine": "unknown"}
    elif forcing.answer == "huge" and envelope[result_key] is not None:
        envelope[result_key] = {**envelope[result_key], "padding": "x" * HUGE_ANSWER_BYTES}
    return dumps(envelope)


def malformed_poll(generation_id: str) -> bytes:
    return b'{"generation_id":"' + generation_id.encode() + b'","status":"'


def vendor_error(
    status: int,
    path: str,
    request_id: str,
    message: str | None = None,
    errors: list[dict[str, str]] | None = None,
) -> bytes:
    """The vendor's JSON error envelope (the contract omits it; this is what it sends)."""
    body: dict[str, Any] = {
        "message": message or _MESSAGES.get(status, "Error"),
        "path": path,
        "requestId": request_id,
        "statusCode": status,
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    if errors:
        body["errors"] = errors
    return dumps(body)


def gateway_page(status: int) -> bytes:
    """The HTML a reverse proxy answers with for 502/503/504: not JSON, on purpose."""
    title = f"{status} {_REASONS.get(status, 'Error')}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()
