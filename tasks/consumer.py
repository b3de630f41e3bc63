"""The worker's consumer: Celery's, with an event connection that never waits for confirms.

On RabbitMQ every publish is confirmed (``confirm_publish``, tasks/celeryconfig.py): a
re-scheduled poll the broker refuses must raise, not vanish. Celery builds the worker's
*event* connection from the same transport options, so each ``task-*`` event became a
publish that blocks until RabbitMQ's ack. With the threads pool that deadlocks under load:
a pool thread sending an event holds the dispatcher's lock and reads the event
connection's socket for the ack, while the worker's event loop reads the same socket
(Celery registers that connection with the loop so broker heartbeats are consumed). One of
the two takes the other's frame; the pool thread then waits forever with the lock held, the
next event send blocks the event loop behind it, heartbeats stop, and RabbitMQ drops the
worker after 60 s, after which it reconnects and stalls again (measured: 10,000 jobs, 9,691
submitted after 12 minutes with events on, all in 64 s with them off; docs/benchmarks.md,
benchmark 9).

Events are monitoring: a broker that refuses one costs a line in Flower, not a job. So the
event connection publishes without confirms, as Celery's default does, and its only reader
is the event loop again. Task messages keep their confirms: they go through the producer
pool, whose connections no event loop reads.
"""

from __future__ import annotations

from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

__all__ = ["Consumer"]


class Consumer(CeleryConsumer):  # type: ignore[misc]  # Celery is untyped
    """Celery's consumer; only the connection it opens for the worker's events differs."""

    def connection_for_write(self, url: Any = None, heartbeat: Any = None) -> Any:
        """The event dispatcher's connection (Celery's only caller): no publisher confirms."""
        return self.ensure_connected(
            self.app.connection_for_write(
                url=url,
                heartbeat=heartbeat,
                transport_options={"confirm_publish": False},
            )
        )
