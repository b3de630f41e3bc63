"""Assembling the aiohttp application, and the background purge that bounds memory."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from workers.emulator import admin, api
from workers.emulator.config import EmulatorConfig
from workers.emulator.state import LOG_ENTRY, MAX_BODY, STATE, State

__all__ = ["MAX_UPLOAD_BYTES", "build_app", "purge_interval"]

MAX_UPLOAD_BYTES = 256 * 1024 * 1024


def purge_interval(retention: float) -> float:
    """How often expired jobs are dropped: a quarter of the retention, 0.25..1 s.

    At most 1 s so a retention shortened at run time takes effect promptly (the loop reads
    the interval before each sleep); a purge is one pass over the jobs, cheap at that rate.
    """
    return min(max(retention / 4, 0.25), 1.0)


async def _purge_forever(state: State) -> None:
    while True:
        await asyncio.sleep(purge_interval(state.config.retention))
        state.store.purge(time.monotonic(), state.config.retention)
        state.stats.trim(time.time())


async def _background(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    state.session = aiohttp.ClientSession(trust_env=False)
    purger = asyncio.create_task(_purge_forever(state))
    yield
    purger.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await purger
    await state.session.close()
    state.session = None


@web.middleware
async def _log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log each ``/v1/...`` request, so tests can check gaps (Retry-After) per job."""
    if not request.path.startswith("/v1/"):
        return await handler(request)
    entry = request.app[STATE].log_request(request.method, request.path)
    request[LOG_ENTRY] = entry
    status: int | str = "cancelled"
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        status = "drop" if entry["fault"] == "rate_drop" else response.status
        return response
    finally:
        entry["status"] = status
        entry["retry_after"] = response.headers.get("Retry-After") if response else None
        entry["done_ts"] = time.time()


@web.middleware
async def _vendor_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request aiohttp itself refuses (body over the limit, ...) gets the vendor's envelope.

    aiohttp raises these as ``HTTPException`` with a plain-text body; the vendor answers
    every 4xx in its JSON envelope, and so must its stand-in.
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not request.path.startswith("/v1/") or not 400 <= exc.status < 500:
            raise
        endpoint = "create" if request.path == "/v1/stt/create" else "get"
        message = exc.reason.lower() if exc.status == 413 else exc.reason
        state = request.app[STATE]
        return api.error_response(state, endpoint, exc.status, request.path, message)


def build_app(
    config: EmulatorConfig | None = None, *, max_body_bytes: int = MAX_UPLOAD_BYTES
) -> web.Application:
    """The emulator as an aiohttp application, for ``web.run_app`` or embedding in tests.

    A request body over ``max_body_bytes`` is answered 413 in the vendor's envelope.
    """
    app = web.Application(
        client_max_size=max_body_bytes, middlewares=[_log_requests, _vendor_errors]
    )
    app[STATE] = State(config or EmulatorConfig())
    app[MAX_BODY] = max_body_bytes
    app.router.add_post("/v1/stt/create", api.create_generation)
    app.router.add_get("/v1/stt/{generation_id}", api.get_generation, allow_head=False)
    app.router.add_routes(admin.routes)
    app.router.add_route("*", "/{tail:.*}", api.not_found)
    app.cleanup_ctx.append(_background)
    return app
