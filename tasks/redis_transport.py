"""kombu's Redis transport, with one Redis client per channel instead of one per operation.

kombu builds a new ``redis.Redis`` for every publish, ack and restore
(``Channel.conn_or_acquire``): a client costs more to construct (its command table and
response callbacks) than the command it then sends. A channel is used by one thread at a
time and a ``redis.Redis`` is thread-safe anyway (each command borrows a connection from
the pool), so keep one per channel, rebuilt when kombu replaces the pool (after a fork or
a lost connection). Selected for ``redis://`` and ``rediss://`` brokers by
``tasks.celeryconfig``; the wire protocol and the keys are kombu's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis

__all__ = ["Channel", "Transport"]


class Channel(kombu_redis.Channel):
    _reused_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        pool = self.pool
        reused = self._reused_client
        if reused is None or reused.connection_pool is not pool:
            reused = self._reused_client = self._create_client()  # type: ignore[no-untyped-call]
        yield reused


class Transport(kombu_redis.Transport):
    Channel = Channel
