"""Per-process singletons: one store (connection pool), one API client and the shared
limits' Redis connection per process.

Built lazily on first use in the process that uses them, and rebuilt if the process forks
(prefork pool children must not share the parent's sockets).
"""

from __future__ import annotations

import os
import threading

from tasks.client import STTClient
from tasks.inflight import InFlightLimiter, in_flight_job_ids
from tasks.ratelimit import RateLimiter, limiter_redis
from tasks.settings import Settings, get_settings
from tasks.store import Store

__all__ = ["get_client", "get_in_flight", "get_store", "mark_worker", "reset"]

_lock = threading.Lock()
_pid: int | None = None
_store: Store | None = None
_client: STTClient | None = None
_limits: tuple[RateLimiter | None, InFlightLimiter | None] | None = None
# Set in a Celery worker (tasks.pipeline connects it to ``worker_init``); kept across fork.
_in_worker = False


def mark_worker() -> None:
    """This process is a worker: its steps retry database errors themselves, so its store
    can skip the per-transaction liveness ping (see ``tasks.store._make_engine``)."""
    global _in_worker
    _in_worker = True


def _check_pid() -> None:
    global _pid, _store, _client, _limits
    if _pid != os.getpid():
        # Inherited across fork: drop without closing, the parent still owns them.
        _pid, _store, _client, _limits = os.getpid(), None, None, None


def get_store(settings: Settings | None = None) -> Store:
    global _store
    with _lock:
        _check_pid()
        if _store is None:
            _store = Store((settings or get_settings()).database_url, pre_ping=not _in_worker)
        return _store


def get_client(settings: Settings | None = None) -> STTClient:
    global _client
    with _lock:
        _check_pid()
        if _client is None:
            settings = settings or get_settings()
            throttle = _get_limits(settings)[0]
            _client = STTClient.from_settings(settings, throttle=throttle)
        return _client


def get_in_flight(settings: Settings | None = None) -> InFlightLimiter | None:
    """The shared cap on jobs in flight, or None when ``STT_MAX_IN_FLIGHT`` is 0."""
    with _lock:
        _check_pid()
        return _get_limits(settings or get_settings())[1]


def _get_limits(settings: Settings) -> tuple[RateLimiter | None, InFlightLimiter | None]:
    """Build both limits on first use (call with ``_lock`` held)."""
    global _limits
    if _limits is None:
        url = settings.limiter_redis_url
        rate, cap = settings.api_rate_limit, settings.max_in_flight
        if url is None or not (rate or cap):
            _limits = (None, None)
        else:
            client = limiter_redis(url)
            _limits = (
                RateLimiter(client, rate) if rate else None,
                InFlightLimiter(client, cap, seed=lambda: in_flight_job_ids(get_store()))
                if cap
                else None,
            )
    return _limits


def reset() -> None:
    """Close and forget both (tests and settings reloads)."""
    global _store, _client, _limits
    with _lock:
        if _store is not None:
            _store.close()
        if _client is not None:
            _client.close()
        _store = _client = None
        _limits = None
