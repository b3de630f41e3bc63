"""The vendor's two endpoints: ``POST /v1/stt/create`` and ``GET /v1/stt/{generation_id}``.

Each request goes: count it; add latency; maybe a *refusing* fault (429/500/502/503: the
service never sees it); auth; the real work; then maybe a *losing* fault (504, hang, drop,
malformed: the work is done, e.g. the job exists, but the answer is late, cut or garbled).
The GET path is the hot one: no JSON work, a dict lookup and cached bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid

from aiohttp import web

from workers.emulator import render
from workers.emulator.audio import fetch_local, is_local, wav_duration
from workers.emulator.config import EmulatorConfig, FaultSpec
from workers.emulator.conventions import Forcing, forcing_for
from workers.emulator.faults import Fault
from workers.emulator.intake import CreateRequest, read_create
from workers.emulator.jobs import Job, new_generation_id
from workers.emulator.state import LOG_ENTRY, STATE, State
from workers.emulator.timing import server_times
from workers.emulator.transcript import duration_for

__all__ = ["FORCED_ERROR_MESSAGE", "create_generation", "get_generation", "not_found"]

FORCED_ERROR_MESSAGE = "Transcription failed: forced by 'force-error' in the audio URL"
_JSON = "application/json"


def _authorized(request: web.Request, config: EmulatorConfig) -> bool:
    header = request.headers.get("Authorization", "")
    if header in config.auth_headers:
        return True
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and token.strip() in config.api_keys


def error_response(
    state: State,
    endpoint: str,
    status: int,
    path: str,
    message: str | None = None,
    errors: list[dict[str, str]] | None = None,
    retry_after: int | None = None,
) -> web.Response:
    """An error as the vendor sends it: JSON envelope, or a gateway's HTML for 502-504."""
    state.stats.answered(endpoint, status)
    if status in (502, 503, 504):
        return web.Response(
            body=render.gateway_page(status), status=status, content_type="text/html"
        )
    request_id = str(uuid.uuid4())
    headers = {"x-request-id": request_id}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    body = render.vendor_error(status, path, request_id, message, errors)
    return web.Response(body=body, status=status, content_type=_JSON, headers=headers)


def _forced(state: State, endpoint: str, status: int, path: str) -> web.Response:
    return error_response(state, endpoint, status, path, retry_after=1 if status == 429 else None)


async def _pre_faults(
    request: web.Request, state: State, endpoint: str, spec: FaultSpec
) -> tuple[Fault | None, web.Response | None]:
    """Latency, then one fault draw; a refusing fault answers right here."""
    delay = state.dice.latency(spec)
    if delay > 0:
        await asyncio.sleep(delay)
    fault = state.dice.draw(spec)
    if fault is None or not fault.rejects:
        return fault, None
    status = fault.status or 500
    retry_after = spec.retry_after if fault is Fault.HTTP_429 else None
    return fault, error_response(state, endpoint, status, request.path, retry_after=retry_after)


async def _deliver(
    request: web.Request,
    state: State,
    endpoint: str,
    fault: Fault | None,
    spec: FaultSpec,
    body: bytes,
    malformed: bytes,
) -> web.StreamResponse:
    """Send the real answer, unless a losing fault spoils it."""
    if fault is Fault.HANG:
        await asyncio.sleep(spec.hang_seconds)
        state.stats.answered(endpoint, "hang")
        return web.Response(body=body, status=201, content_type=_JSON)
    if fault is Fault.DROP:
        state.stats.answered(endpoint, "drop")
        if request.transport is not None:
            request.transport.close()
        return web.Response()  # never reaches the client: the connection is gone
    if fault is Fault.MALFORMED:
        state.stats.answered(endpoint, 201)
        return web.Response(body=malformed, status=201, content_type=_JSON)
    if fault is Fault.HTTP_504:
        return error_response(state, endpoint, 504, request.path)
    state.stats.answered(endpoint, 201)
    return web.Response(body=body, status=201, content_type=_JSON)


async def _admit(
    request: web.Request, endpoint: str, now_wall: float
) -> tuple[FaultSpec, Fault | None, web.StreamResponse | None]:
    """What both endpoints do first: count the request, roll its fault, check the key.

    Returns the fault spec, the fault to apply on delivery, and an answer to send at once
    instead of serving the request (a refusing fault or a 401), if any.
    """
    state = request.app[STATE]
    state.stats.arrived(endpoint, now_wall)
    spec = state.config.faults_for(endpoint)
    fault: Fault | None = None
    if spec.active:
        fault, refused = await _pre_faults(request, state, endpoint, spec)
        if LOG_ENTRY in request:
            request[LOG_ENTRY]["fault"] = fault.value if fault else None
        if refused is not None:
            return spec, fault, refused
    if not _authorized(request, state.config):
        return spec, fault, error_response(state, endpoint, 401, request.path)
    return spec, fault, None


async def create_generation(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    config = state.config
    spec, fault, early = await _admit(request, "create", time.time())
    if early is not None:
        return early
    parsed = await read_create(request, config.model)
    if isinstance(parsed, list):
        return error_response(state, "create", 400, request.path, errors=parsed)
    calls = state.store.note_create_call(parsed.source)
    forcing = forcing_for(parsed.url)
    if forcing.create is not None and forcing.create.applies(calls):
        return _forced(state, "create", forcing.create.status, request.path)
    job = await _new_job(state, config, spec, parsed, forcing)
    state.store.add(job)
    body = render.create_body(job, config.dialect)
    return await _deliver(request, state, "create", fault, spec, body, render.MALFORMED_CREATE)


async def _new_job(
    state: State, config: EmulatorConfig, spec: FaultSpec, req: CreateRequest, forcing: Forcing
) -> Job:
    """Work out the audio's duration and the job's schedule and fate."""
    source = req.source
    error: str | None = None
    read: float | None = None  # the duration read from a WAV, if there was one
    if req.audio is not None:
        sha = source
        read = wav_duration(req.audio)
    else:
        sha = hashlib.sha256(source.encode()).hexdigest()
        if forcing.duration is None and is_local(source) and state.session is not None:
            download = await fetch_local(state.session, source)
            if download.data is None:
                error = download.error  # fails as soon as it leaves the queue
            else:
                sha = hashlib.sha256(download.data).hexdigest()
                read = wav_duration(download.data)
    duration = read if read is not None else duration_for(source)
    queue, processing = server_times(config, duration, state.dice.rng)
    if error is not None:
        processing = 0.0
    if error is None and forcing.error:
        error = FORCED_ERROR_MESSAGE
    if state.dice.job_fails(spec) and error is None:
        error = spec.job_error_message
    now = time.monotonic()
    start = now + queue
    return Job(
        generation_id=new_generation_id(),
        model=req.model,
        source=source,
        url=req.url,
        duration=duration,
        audio_sha256=sha,
        language=req.language,
        prompt=req.prompt,
        temperature=req.temperature,
        forcing=forcing,
        error_message=error,
        created_wall=time.time(),
        created_mono=now,
        start_mono=start,
        finish_mono=start + processing,
    )


async def get_generation(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    config = state.config
    now_wall = time.time()
    spec, fault, early = await _admit(request, "get", now_wall)
    if early is not None:
        return early
    generation_id = request.match_info["generation_id"]
    now = time.monotonic()
    job = state.store.get(generation_id, now, config.retention)
    if job is None:
        return error_response(state, "get", 404, request.path, "Generation not found")
    job.polls += 1
    forced = job.forcing.poll
    if forced is not None and forced.applies(job.polls):
        return _forced(state, "get", forced.status, request.path)
    if job.forcing.scripted is not None:
        return _scripted(state, job.forcing.scripted, request.path)
    phase = job.phase(now)
    if phase.final and job.first_final_poll_wall is None:
        job.first_final_poll_wall = now_wall
    body = render.forced_answer(job, phase, config.dialect) or render.job_body(
        job, phase, config.dialect
    )
    if fault is None:
        state.stats.answered("get", 201)
        return web.Response(body=body, status=201, content_type=_JSON)
    malformed = render.malformed_poll(generation_id)
    return await _deliver(request, state, "get", fault, spec, body, malformed)


def _scripted(state: State, name: str, path: str) -> web.Response:
    """The answer a test registered for ``force-scripted-<name>``, byte for byte."""
    answer = state.answers.get(name)
    if answer is None:
        return error_response(state, "get", 404, path, f"No scripted answer {name!r}")
    status, body = answer
    state.stats.answered("get", status)
    return web.Response(body=body, status=status, content_type=_JSON)


async def not_found(request: web.Request) -> web.StreamResponse:
    """Any other route, answered like the vendor's framework does."""
    message = f"Cannot {request.method} {request.path}"
    request_id = str(uuid.uuid4())
    body = render.vendor_error(404, request.path, request_id, message)
    headers = {"x-request-id": request_id}
    return web.Response(body=body, status=404, content_type=_JSON, headers=headers)
