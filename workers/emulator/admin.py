"""The admin API under ``/_emulator/``: what happened, and knobs to turn. No auth.

Tests observe the emulator only through these endpoints (never through its internals), so
they work the same against a subprocess, an embedded app, or one shared by many tests.
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from workers.emulator import render
from workers.emulator.audio import parse_sample_name, sample_wav
from workers.emulator.jobs import Job
from workers.emulator.state import STATE

__all__ = ["routes"]

routes = web.RouteTableDef()


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=render.dumps(value), status=status, content_type="application/json")


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def job_info(job: Job, now_mono: float) -> dict[str, Any]:
    """What the admin API tells about a job. ``*_at`` are ISO, ``*_ts`` epoch seconds;
    ``finished_at`` is when the job finishes server-side (in the future while pending)."""
    finished_ts = job.wall(job.finish_mono)
    return {
        "generation_id": job.generation_id,
        "model": job.model.id,
        "url": job.url,
        "source": job.source,
        "audio_sha256": job.audio_sha256,
        "duration": job.duration,
        "language": job.language,
        "prompt": job.prompt,
        "temperature": job.temperature,
        "status": job.phase(now_mono).value,
        "finished": now_mono >= job.finish_mono,
        "error": job.error_message,
        "polls": job.polls,
        "created_at": _iso(job.created_wall),
        "created_ts": job.created_wall,
        "started_ts": job.wall(job.start_mono),
        "finished_at": _iso(finished_ts),
        "finished_ts": finished_ts,
        "first_final_poll_ts": job.first_final_poll_wall,
    }


@routes.get("/_emulator/health")
async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return _json({"ok": True, "jobs": len(state.store)})


@routes.get("/_emulator/config")
async def get_config(request: web.Request) -> web.Response:
    return _json(request.app[STATE].config.to_dict())


@routes.post("/_emulator/config")
async def set_config(request: web.Request) -> web.Response:
    """Apply a partial config (JSON object); answer the effective config, or 400."""
    state = request.app[STATE]
    try:
        settings = await request.json()
    except ValueError:
        return _json({"error": "body must be a JSON object"}, 400)
    if not isinstance(settings, dict):
        return _json({"error": "body must be a JSON object"}, 400)
    try:
        config = state.config.updated(settings)
    except (ValueError, TypeError) as exc:
        return _json({"error": str(exc)}, 400)
    state.reconfigure(config, reseed="seed" in settings)
    return _json(config.to_dict())


@routes.post("/_emulator/reset")
async def reset(request: web.Request) -> web.Response:
    """Forget jobs and counters, restore the start-up config and reseed the dice."""
    request.app[STATE].reset()
    return _json({"ok": True})


@routes.post("/_emulator/answers/{name}")
async def script_answer(request: web.Request) -> web.Response:
    """Register the poll answer of ``force-scripted-<name>`` jobs (see conventions.py).

    The body is ``{"status": 201, ...}`` with one of ``"body"`` (text, sent as UTF-8),
    ``"body_b64"`` (bytes) or ``"repeat": {"prefix", "unit", "count", "suffix"}`` (built
    here, so a 16 MiB answer does not have to travel through the admin API).
    """
    try:
        spec = await request.json()
        status = int(spec.get("status", 201))
        if "body_b64" in spec:
            body = base64.b64decode(spec["body_b64"], validate=True)
        elif "repeat" in spec:
            rep = spec["repeat"]
            unit = str(rep["unit"]) * int(rep["count"])
            body = (str(rep.get("prefix", "")) + unit + str(rep.get("suffix", ""))).encode()
        else:
            body = str(spec["body"]).encode("utf-8", "surrogatepass")
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return _json({"error": f"bad scripted answer: {exc!r}"}, 400)
    request.app[STATE].answers[request.match_info["name"]] = (status, body)
    return _json({"ok": True, "bytes": len(body)})


@routes.get("/_emulator/jobs")
async def jobs(request: web.Request) -> web.Response:
    state = request.app[STATE]
    now = time.monotonic()
    state.store.purge(now, state.config.retention)
    return _json({"jobs": [job_info(job, now) for job in state.store.all()]})


@routes.get("/_emulator/jobs/{generation_id}")
async def job(request: web.Request) -> web.Response:
    state = request.app[STATE]
    now = time.monotonic()
    found = state.store.get(request.match_info["generation_id"], now, state.config.retention)
    if found is None:
        return _json({"error": "no such job (unknown or expired)"}, 404)
    return _json(job_info(found, now))


@routes.post("/_emulator/jobs/{generation_id}/expire")
async def expire(request: web.Request) -> web.Response:
    """Forget a job now, as its retention running out would: its next poll answers 404.

    Deterministic where a tiny ``retention`` is not: a poll that lands between the job's
    finish and its expiry would see it completed.
    """
    generation_id = request.match_info["generation_id"]
    if not request.app[STATE].store.forget(generation_id):
        return _json({"error": "no such job (unknown or expired)"}, 404)
    return _json({"expired": generation_id})


@routes.get("/_emulator/creates")
async def creates(request: web.Request) -> web.Response:
    """Per source (URL, or upload SHA-256): generations created, and create calls made."""
    store = request.app[STATE].store
    return _json({"jobs": store.jobs_created, "calls": store.create_calls})


@routes.get("/_emulator/requests")
async def requests_log(request: web.Request) -> web.Response:
    """The newest API requests, oldest first; ``?path=/v1/stt/ID`` keeps one path."""
    path = request.query.get("path")
    entries = [r for r in request.app[STATE].requests if path is None or r["path"] == path]
    return _json({"requests": entries})


@routes.get("/_emulator/stats")
async def stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    snapshot = state.stats.snapshot()
    snapshot["jobs"] = len(state.store)
    snapshot["rss_bytes"] = rss_bytes()
    return _json(snapshot)


@routes.get("/_emulator/samples/{name}")
async def sample(request: web.Request) -> web.Response:
    """A generated WAV, e.g. ``/_emulator/samples/2.5s.wav`` (up to 3600 s)."""
    seconds = parse_sample_name(request.match_info["name"])
    if seconds is None:
        return _json({"error": "name samples like 2.5s.wav (0 < seconds <= 3600)"}, 404)
    return web.Response(body=sample_wav(seconds), content_type="audio/wav")


def rss_bytes() -> int | None:
    """This process's resident set size, from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
