"""Total deadlines for HTTP requests: connect + send + receive, whatever the server does.

requests and urllib3 only bound each socket operation: ``timeout=(connect, read)`` is the
longest wait for the *next* byte, so a server that sends one byte every half second holds
a request forever (requests' documentation says as much, and recommends enforcing a total
time yourself). urllib3's ``Timeout(total=...)`` shares the same per-operation meaning.

Here the whole exchange gets one deadline. ``deadline(seconds)`` opens a scope; every
socket a request of the scope uses (new or pooled) is handed to one watchdog thread per
process, which shuts the socket down when the deadline passes. The blocked ``recv`` or
``send`` then fails at once, urllib3 discards the connection, and the caller sees
``scope.expired`` and reports a timeout. Shutting down from another thread is the one
portable way to interrupt a blocking socket call (``close`` does not wake it); it works
for TLS sockets too (the raw descriptor is shut down) and under gevent, whose monkey-patched
threads and sockets keep the same semantics.

A watchdog thread, rather than one timer per request, keeps the cost of a request to a
dictionary insert and delete under a lock (a poll is the hot path: docs/benchmarks.md).
Name resolution (``getaddrinfo``) happens before the socket exists and cannot be
interrupted at all, so ``resolve`` runs it in a thread of its own and stops *waiting* for
it when the scope's time is up: the caller goes on, the thread ends with the resolver's
own timeout. Only the guarded connections (callbacks, the audio probe: hosts a submitter
chose) resolve this way; the API's one host resolves once per pooled connection.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry

__all__ = [
    "DeadlineAdapter",
    "DeadlineHTTPConnection",
    "DeadlineHTTPSConnection",
    "Scope",
    "arm",
    "deadline",
    "mount",
    "resolve",
]


@dataclass(eq=False)
class Scope:
    """One request's deadline (``time.monotonic()`` seconds) and whether it was enforced."""

    seconds: float
    at: float
    expired: bool = False
    sockets: list[socket.socket] = field(default_factory=list)

    def remaining(self) -> float:
        return self.at - time.monotonic()


_CURRENT: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "stt_http_deadline", default=None
)


def _shutdown(sock: socket.socket) -> None:
    # The base class's method: SSLSocket.shutdown would also drop its TLS state while
    # another thread is inside a read on it. OSError: already closed, nothing to interrupt.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """Shuts down sockets whose scope's deadline passed. One thread, started on first use."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        """Fresh state; also in a forked child, where the parent's lock may be held by a
        thread that does not exist there, and the watchdog thread is gone."""
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, int]] = []
        # id(socket) -> (sequence, scope, socket): the latest scope to use a socket owns it
        # (a pooled connection passes from one request to the next).
        self._armed: dict[int, tuple[int, Scope, socket.socket]] = {}
        self._seq = itertools.count()
        self._pid: int | None = None

    def arm(self, sock: socket.socket, scope: Scope) -> None:
        if scope.remaining() <= 0:
            scope.expired = True
            _shutdown(sock)
            return
        with self._cond:
            self._ensure_thread()
            seq = next(self._seq)
            self._armed[id(sock)] = (seq, scope, sock)
            heapq.heappush(self._heap, (scope.at, seq, id(sock)))
            if self._heap[0][1] == seq:
                self._cond.notify()
        scope.sockets.append(sock)

    def disarm(self, scope: Scope) -> None:
        with self._cond:
            for sock in scope.sockets:
                entry = self._armed.get(id(sock))
                if entry is not None and entry[1] is scope:
                    del self._armed[id(sock)]
            # Stale heap entries are dropped when they come due; under a steady stream of
            # requests that finish in time, rebuild now and then so the heap stays small.
            if len(self._heap) > 2 * len(self._armed) + 1024:
                self._heap = [(e[1].at, e[0], key) for key, e in self._armed.items()]
                heapq.heapify(self._heap)

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():  # first use (in this process)
            self._pid = os.getpid()
            threading.Thread(target=self._run, name="stt-http-deadline", daemon=True).start()

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, seq, key = heapq.heappop(self._heap)
                    entry = self._armed.get(key)
                    if entry is not None and entry[0] == seq:
                        del self._armed[key]
                        entry[1].expired = True
                        _shutdown(entry[2])
                wait = self._heap[0][0] - now if self._heap else None
                self._cond.wait(wait)


_WATCHDOG = _Watchdog()
os.register_at_fork(after_in_child=_WATCHDOG._reset)  # prefork pool children


@contextmanager
def deadline(seconds: float) -> Iterator[Scope]:
    """Every request made inside is cut off ``seconds`` after the scope opened."""
    scope = Scope(seconds, time.monotonic() + seconds)
    token = _CURRENT.set(scope)
    try:
        yield scope
    finally:
        _CURRENT.reset(token)
        _WATCHDOG.disarm(scope)


Resolver = Callable[..., list[tuple[Any, ...]]]


def resolve(
    host: str, port: int, *args: Any, resolver: Resolver = socket.getaddrinfo
) -> list[tuple[Any, ...]]:
    """``resolver(host, port, *args)`` (``socket.getaddrinfo``), given up on when the
    current scope's deadline passes: ``TimeoutError``, and the scope is marked expired.

    Without a scope, a plain call. With one, a daemon thread resolves while the caller
    waits at most what is left of the scope: ~0.15 ms of CPU more per new connection
    (measured against a literal address), once per callback or probe, never per poll.
    """
    scope = _CURRENT.get()
    if scope is None:
        return resolver(host, port, *args)
    outcome: list[Any] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append(resolver(host, port, *args))
        except BaseException as exc:  # handed to the caller below
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="stt-resolve", daemon=True).start()
    if not done.wait(max(0.0, scope.remaining())):
        scope.expired = True
        raise TimeoutError(f"resolving {host} took longer than {scope.seconds:g} s")
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return list(result)


def arm(sock: socket.socket | None) -> None:
    """Hand ``sock`` to the watchdog under the current scope (no scope: nothing)."""
    scope = _CURRENT.get()
    if scope is not None and sock is not None:
        _WATCHDOG.arm(sock, scope)


class DeadlineHTTPConnection(HTTPConnection):
    """An HTTP connection whose socket obeys the current ``deadline`` scope."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        arm(sock)  # before TLS and before the request: a slow handshake counts too
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:  # a pooled connection: this request's scope owns it now
            arm(self.sock)
        super().request(*args, **kwargs)


class DeadlineHTTPSConnection(HTTPSConnection):
    """The TLS twin of ``DeadlineHTTPConnection``."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        arm(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:
            arm(self.sock)
        super().request(*args, **kwargs)


class DeadlineAdapter(HTTPAdapter):
    """A requests adapter whose connections are ``http``/``https`` (deadline-aware by
    default), directly or through a proxy, with urllib3's own retries off: retrying is the
    tasks' job (a hidden retry would double API calls and hide ``Retry-After``)."""

    def __init__(
        self,
        *,
        pool_size: int,
        http: type[HTTPConnection] = DeadlineHTTPConnection,
        https: type[HTTPSConnection] = DeadlineHTTPSConnection,
    ) -> None:
        class _HTTPPool(HTTPConnectionPool):
            ConnectionCls = http

        class _HTTPSPool(HTTPSConnectionPool):
            ConnectionCls = https

        self._pools: dict[str, type[HTTPConnectionPool]] = {"http": _HTTPPool, "https": _HTTPSPool}
        super().__init__(
            pool_connections=2, pool_maxsize=pool_size, max_retries=Retry(0, read=False)
        )

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = self._pools
        return manager


def mount(session: requests.Session, adapter: HTTPAdapter) -> None:
    """Use ``adapter`` for every http and https URL of ``session``."""
    session.mount("https://", adapter)
    session.mount("http://", adapter)
