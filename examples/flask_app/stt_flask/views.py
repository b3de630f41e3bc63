"""Enqueue a transcription, read it back, and receive its signed completion callback."""

import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from tasks import EnqueueError, InvalidInput, get_transcription, transcribe
from tasks.callbacks import job_view
from tasks.signing import verify_signature

log = logging.getLogger(__name__)
bp = Blueprint("transcriptions", __name__)

# What a client may send. callback_url is deliberately not among them: the app sets it
# (STT_CALLBACK_URL), so clients cannot make the workers POST to arbitrary hosts.
FIELDS = ("url", "model", "language", "prompt", "temperature", "metadata", "idempotency_key")

RETRY = {"Retry-After": "30"}

# Finished jobs as the callback delivered them. A real app would update its own model here.
RECEIVED: dict[str, dict[str, Any]] = {}


def _form_number(raw: str) -> object:
    try:
        return float(raw)
    except ValueError:
        return raw  # let validation name the field


def _tenant() -> str | None:
    """Whose request this is: idempotency keys are unique per tenant, so two customers who
    pick the same key get two jobs. A real app takes it from its own authentication (the
    signed-in account); this example reads the ``X-Tenant`` header that the authenticating
    gateway in front of it sets (and strips from what clients send)."""
    return request.headers.get("X-Tenant") or None


def _request_fields() -> dict[str, Any]:
    """The job's fields from a JSON body or a form; ``InvalidInput`` names a bad one."""
    if request.is_json:
        data = request.get_json(silent=True)
        if data is None:
            raise InvalidInput("body", "is not valid JSON")
        if not isinstance(data, dict):
            raise InvalidInput("body", "must be a JSON object")
    else:
        data = request.form.to_dict()
        if "temperature" in data:
            data["temperature"] = _form_number(data["temperature"])
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise InvalidInput(unknown[0], "is not a field of a transcription job")
    if "url" not in data:
        raise InvalidInput("url", "is required")
    return data


@bp.post("/jobs")
def create_job() -> tuple[Response, int] | tuple[Response, int, dict[str, str]]:
    """POST /jobs -> 202 {"id": ...}; 400 {"field": ..., "error": ...} on bad input, and on
    an idempotency key reused with other parameters (``IdempotencyKeyReused``); 503 when
    the broker or the database is down (nothing was enqueued: try again)."""
    try:
        handle = transcribe(
            **_request_fields(),
            callback_url=current_app.config["STT_CALLBACK_URL"],
            tenant=_tenant(),
        )
    except InvalidInput as exc:
        return jsonify(field=exc.field, error=str(exc)), 400
    except EnqueueError as exc:
        log.error("%s", exc)  # names the setting to check; the client needs less
        return jsonify(error="could not enqueue the job; try again later"), 503, RETRY
    location = url_for("transcriptions.job_detail", job_id=handle.id)
    return jsonify(id=handle.id, status_url=location), 202, {"Location": location}


@bp.get("/jobs/<job_id>")
def job_detail(job_id: str) -> Response | tuple[Response, int]:
    """GET /jobs/<id> -> the stored job (status, text, usage, cost, timings) or 404."""
    record = get_transcription(job_id)
    if record is None:
        return jsonify(error=f"no job {job_id!r}"), 404
    return jsonify(job_view(record))


@bp.post("/callbacks/stt")
def stt_callback() -> tuple[Response, int]:
    """POST /callbacks/stt from the workers when a job ends; 401 unless validly signed."""
    secret = current_app.config["STT_CALLBACK_SECRET"]
    body = request.get_data()  # the raw bytes: the signature covers them exactly
    if not secret or not verify_signature(secret, body, request.headers):
        return jsonify(error="invalid signature"), 401
    job = request.get_json(force=True)
    RECEIVED[job["id"]] = job  # idempotent: a repeated delivery overwrites the same entry
    log.info("transcription %s finished: %s", job["id"], job["status"])
    return jsonify(ok=True), 200
