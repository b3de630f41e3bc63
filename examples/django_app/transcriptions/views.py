"""Enqueue a transcription, read it back, and receive its signed completion callback."""

import json
import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from tasks import EnqueueError, InvalidInput, get_transcription, transcribe
from tasks.callbacks import job_view
from tasks.signing import verify_signature

log = logging.getLogger(__name__)

# What a client may send. callback_url is deliberately not among them: the app sets it
# (STT_CALLBACK_URL), so clients cannot make the workers POST to arbitrary hosts.
FIELDS = ("url", "model", "language", "prompt", "temperature", "metadata", "idempotency_key")

# Finished jobs as the callback delivered them. A real app would update its own model here.
RECEIVED: dict[str, dict[str, Any]] = {}


def _form_number(raw: str) -> object:
    try:
        return float(raw)
    except ValueError:
        return raw  # let validation name the field


def _tenant(request: HttpRequest) -> str | None:
    """Whose request this is: idempotency keys are unique per tenant, so two customers who
    pick the same key get two jobs. A real app takes it from its own authentication
    (``request.user``); this example reads the ``X-Tenant`` header that the authenticating
    gateway in front of it sets (and strips from what clients send)."""
    return request.headers.get("X-Tenant") or None


def _request_fields(request: HttpRequest) -> dict[str, Any]:
    """The job's fields from a JSON body or a form; ``InvalidInput`` names a bad one."""
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"null")
        except ValueError:
            raise InvalidInput("body", "is not valid JSON") from None
        if not isinstance(data, dict):
            raise InvalidInput("body", "must be a JSON object")
    else:
        data = request.POST.dict()
        if "temperature" in data:
            data["temperature"] = _form_number(data["temperature"])
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise InvalidInput(unknown[0], "is not a field of a transcription job")
    if "url" not in data:
        raise InvalidInput("url", "is required")
    return data


@require_POST
def create_job(request: HttpRequest) -> JsonResponse:
    """POST /jobs -> 202 {"id": ...}; 400 {"field": ..., "error": ...} on bad input, and on
    an idempotency key reused with other parameters (``IdempotencyKeyReused``); 503 when
    the broker or the database is down (nothing was enqueued: try again)."""
    try:
        handle = transcribe(
            **_request_fields(request),
            callback_url=settings.STT_CALLBACK_URL,
            tenant=_tenant(request),
        )
    except InvalidInput as exc:
        return JsonResponse({"field": exc.field, "error": str(exc)}, status=400)
    except EnqueueError as exc:
        log.error("%s", exc)  # names the setting to check; the client needs less
        response = JsonResponse({"error": "could not enqueue the job; try again later"}, status=503)
        response["Retry-After"] = "30"
        return response
    location = reverse("job-detail", args=[handle.id])
    response = JsonResponse({"id": handle.id, "status_url": location}, status=202)
    response["Location"] = location
    return response


@require_GET
def job_detail(request: HttpRequest, job_id: str) -> JsonResponse:
    """GET /jobs/<id> -> the stored job (status, text, usage, cost, timings) or 404."""
    record = get_transcription(job_id)
    if record is None:
        return JsonResponse({"error": f"no job {job_id!r}"}, status=404)
    return JsonResponse(job_view(record))


@csrf_exempt  # a server-to-server POST: the HMAC signature authenticates it, not a cookie
@require_POST
def stt_callback(request: HttpRequest) -> JsonResponse:
    """POST /callbacks/stt from the workers when a job ends; 401 unless validly signed."""
    secret = settings.STT_CALLBACK_SECRET
    # Verify the raw bytes before parsing them: the signature covers the exact body.
    if not secret or not verify_signature(secret, request.body, request.headers):
        return JsonResponse({"error": "invalid signature"}, status=401)
    job = json.loads(request.body)
    RECEIVED[job["id"]] = job  # idempotent: a repeated delivery overwrites the same entry
    log.info("transcription %s finished: %s", job["id"], job["status"])
    return JsonResponse({"ok": True})
