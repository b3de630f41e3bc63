"""Per-process singletons: one store (connection pool) and one API client per process.

Built lazily on first use in the process that uses them, and rebuilt if the process forks
(prefork pool children must not share the parent's sockets).
"""

from __future__ import annotations

import os
import threading

from tasks.client import STTClient
from tasks.settings import Settings, get_settings
from tasks.store import Store

__all__ = ["get_client", "get_store", "reset"]

_lock = threading.Lock()
_pid: int | None = None
_store: Store | None = None
_client: STTClient | None = None


def _check_pid() -> None:
    global _pid, _store, _client
    if _pid != os.getpid():
        # Inherited across fork: drop without closing, the parent still owns them.
        _pid, _store, _client = os.getpid(), None, None


def get_store(settings: Settings | None = None) -> Store:
    global _store
    with _lock:
        _check_pid()
        if _store is None:
            _store = Store((settings or get_settings()).database_url)
        return _store


def get_client(settings: Settings | None = None) -> STTClient:
    global _client
    with _lock:
        _check_pid()
        if _client is None:
            _client = STTClient.from_settings(settings or get_settings())
        return _client


def reset() -> None:
    """Close and forget both (tests and settings reloads)."""
    global _store, _client
    with _lock:
        if _store is not None:
            _store.close()
        if _client is not None:
            _client.close()
        _store = _client = None
