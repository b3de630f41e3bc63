"""Which broker holds the waiting polls, and what each one needs.

Every waiting poll is a message with a countdown. Where it waits is the broker's choice:

* **RabbitMQ with a quorum queue and a topic exchange**: Celery's native delayed delivery
  (kombu's ``native_delayed_delivery``: 28 queues with per-level TTLs chained by
  dead-letter exchanges) keeps the message *in the broker* until it is due. Workers hold
  only what they run, so their memory stays flat, a new worker shares the waiting work
  at once, and a killed worker's few unacknowledged messages come back the moment its
  connection drops. Producers and workers alike must declare the queue as quorum with a
  topic exchange (a direct exchange silently falls back to the next bullet) and publish
  with confirms.
* **Every other broker (Redis, the demo's filesystem)**: the worker that fetched the
  message holds it in its own memory until due (Celery's ETA mechanism), about 12 KB
  each; ``worker_eta_task_limit`` caps how many (docs/benchmarks.md).

This module names the stt queue once, builds its declaration, rounds countdowns for the
RabbitMQ path and refuses, in one line, the two configurations that would quietly fall
back to worker-held countdowns: a worker meeting an existing classic ``stt`` queue and a
web app's Celery app publishing to RabbitMQ without the quorum declaration.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

from kombu.entity import Exchange, Queue

from tasks.errors import STTError

__all__ = [
    "EXCHANGE_NAME",
    "QUEUE_NAME",
    "BrokerKind",
    "BrokerMisconfigured",
    "broker_countdown",
    "broker_kind",
    "check_producer",
    "declare_stt_queue",
    "holds_countdowns_in_worker",
    "stt_queue",
]

# The queue the stt workers consume; web apps route stt.* tasks to it.
QUEUE_NAME = "stt"
# Its RabbitMQ exchange. Not "stt": Celery's default for an undeclared queue is a *direct*
# exchange of the queue's name, which a deployment of an earlier release already has, and
# RabbitMQ cannot change an exchange's type in place.
EXCHANGE_NAME = "stt.topic"
_QUORUM = {"x-queue-type": "quorum"}


class BrokerKind(StrEnum):
    """What ``STT_BROKER_URL`` names, as far as waiting polls are concerned."""

    REDIS = "redis"
    RABBITMQ = "rabbitmq"
    FILESYSTEM = "filesystem"
    OTHER = "other"


def broker_kind(url: str) -> BrokerKind:
    """Classify a Celery broker URL by its scheme."""
    scheme = url.partition("://")[0].lower()
    if scheme in ("redis", "rediss", "unix", "sentinel"):
        return BrokerKind.REDIS
    if scheme in ("amqp", "amqps", "pyamqp"):
        return BrokerKind.RABBITMQ
    if scheme == "filesystem":
        return BrokerKind.FILESYSTEM
    return BrokerKind.OTHER


class BrokerMisconfigured(STTError):
    """The broker's queue (or the publishing app) would hold countdowns in worker memory."""


def stt_queue() -> Queue:
    """The stt queue as RabbitMQ must see it: quorum, bound to a *topic* exchange.

    A topic exchange because kombu re-routes due messages from its delay exchanges by
    routing-key pattern (``#.stt``); a direct exchange cannot be bound that way and Celery
    then falls back to worker-held countdowns with only a log line to say so.
    """
    return Queue(
        QUEUE_NAME,
        Exchange(EXCHANGE_NAME, type="topic"),
        routing_key=QUEUE_NAME,
        queue_arguments=dict(_QUORUM),
    )


def broker_countdown(kind: BrokerKind, seconds: float) -> float:
    """The countdown to publish for a wait of ``seconds`` on this broker.

    kombu's delay queues count whole seconds and truncate (``int(countdown)``): a fraction
    would arrive early (the worker then holds it for the rest) and anything under a second
    makes Celery raise at publish. Rounding *up* on RabbitMQ keeps every message in the
    broker until due, at most a second late. Other brokers keep the exact value.
    """
    if kind is BrokerKind.RABBITMQ and seconds > 0:
        return float(math.ceil(seconds))
    return seconds


def holds_countdowns_in_worker(app: Any) -> bool:
    """Would this Celery app's workers hold waiting messages in memory (ETA)?

    False only on RabbitMQ when the stt queue is a quorum queue bound to a non-direct
    exchange: the condition under which Celery publishes countdowns through the broker's
    delay queues.
    """
    if broker_kind(str(app.conf.broker_url or "")) is not BrokerKind.RABBITMQ:
        return True
    queue = app.amqp.queues.get(QUEUE_NAME)
    if queue is None or (queue.queue_arguments or {}).get("x-queue-type") != "quorum":
        return True
    return queue.exchange is None or queue.exchange.type == "direct"


def check_producer(app: Any) -> None:
    """Refuse to publish stt jobs to RabbitMQ from an app without the quorum declaration.

    Such an app would declare ``stt`` as a classic queue on first publish (the workers then
    refuse it) or, if the quorum queue exists, have every publish rejected by the broker.
    Called by ``transcribe()``; cheap (it reads the app's configuration only).
    """
    if broker_kind(str(app.conf.broker_url or "")) is BrokerKind.RABBITMQ and (
        holds_countdowns_in_worker(app)
    ):
        raise BrokerMisconfigured(
            f"the Celery app publishes to RabbitMQ without the {QUEUE_NAME!r} quorum queue on "
            "a topic exchange: merge tasks.celeryconfig.producer_config() into its "
            "configuration (see examples/README.md)"
        )


def declare_stt_queue(connection: Any, vhost: str) -> None:
    """Declare the stt quorum queue, or raise ``BrokerMisconfigured`` in one line.

    RabbitMQ refuses to redeclare a queue with other arguments (``PRECONDITION_FAILED``),
    which is how an existing classic queue shows itself. Celery would meet the same refusal
    later, inside its consumer, and retry forever; a worker that cannot use the broker's
    delayed delivery must rather not start at all.
    """
    from amqp.exceptions import PreconditionFailed

    queue = stt_queue()
    try:
        queue.bind(connection.default_channel).declare()
    except PreconditionFailed as exc:
        reason = str(getattr(exc, "reply_text", exc))
        if "x-queue-type" in reason:
            raise BrokerMisconfigured(
                f"RabbitMQ queue {QUEUE_NAME!r} in vhost {vhost!r} is a classic queue; the "
                "workers need a quorum queue so that waiting polls stay in the broker: delete it "
                f"(rabbitmqctl delete_queue -p {vhost} {QUEUE_NAME}; stt.sweep re-drives its "
                "jobs from the database) and start again (docs/operations.md)"
            ) from None
        raise BrokerMisconfigured(
            f"RabbitMQ refused to declare queue {QUEUE_NAME!r} in vhost {vhost!r}: {reason}"
        ) from None
