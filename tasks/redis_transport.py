"""kombu's Redis transport, with one Redis client per channel instead of one per operation.

kombu builds a new ``redis.Redis`` for every publish, ack and restore
(``Channel.conn_or_acquire``): a client costs more to construct (its command table and
response callbacks) than the command it then sends. A channel is used by one thread at a
time and a ``redis.Redis`` is thread-safe anyway (each command borrows a connection from
the pool), so keep one per channel, rebuilt when kombu replaces the pool (after a fork or
a lost connection), and fail as a connection error, not an AttributeError, when the
connection is already gone. Selected for ``redis://`` brokers by
``tasks.celeryconfig``; the wire protocol and the keys are kombu's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["Channel", "Transport"]


class Channel(kombu_redis.Channel):
    _reused_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        if self._pool is None and getattr(self.connection, "client", None) is None:
            # The connection is closing after a loss (kombu restores unacked messages
            # on close): rebuilding a pool from a connection that is gone raises
            # AttributeError, which kombu does not expect and the worker dies of
            # ("Unrecoverable error", exit status 0). A connection error is expected:
            # kombu ignores it during cleanup, the worker reconnects, and the messages
            # stay in Redis's unacked set until the visibility timeout restores them.
            raise RedisConnectionError("the broker connection is closed")
        pool = self.pool
        reused = self._reused_client
        if reused is None or reused.connection_pool is not pool:
            reused = self._reused_client = self._create_client()  # type: ignore[no-untyped-call]
        yield reused


class Transport(kombu_redis.Transport):
    Channel = Channel
