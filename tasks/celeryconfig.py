"""The one place Celery is configured, as a plain dict built from ``Settings``.

``workers.celery_app`` builds the worker's app from it; ``tasks.jobs`` builds the same app
in a web process that did not configure one; a Django or Flask app may merge it into its
own configuration. Keeping it here (not in ``workers``) lets ``tasks`` stay import-free of
``workers``.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from tasks.broker import QUEUE_NAME, BrokerKind, broker_kind, stt_queue
from tasks.settings import DEFAULT_VISIBILITY_TIMEOUT, Settings, get_settings

__all__ = [
    "FILESYSTEM_POLLING_INTERVAL",
    "FILESYSTEM_TRANSPORT",
    "PRUNE_EVERY",
    "VISIBILITY_TIMEOUT",
    "beat_schedule",
    "celery_config",
    "producer_config",
    "redis_transport_options",
]

# Redis/SQS redeliver a message that is not acked within this many seconds. With
# acks_late, a poll waiting on its countdown is unacked the whole time, so this must be
# well above the longest countdown (Retry-After is capped at 300 s in tasks.polling) and
# well below the server's one-hour retention, so a killed worker's jobs come back in time.
# STT_VISIBILITY_TIMEOUT overrides it (the fault tests use seconds, not minutes).
VISIBILITY_TIMEOUT = DEFAULT_VISIBILITY_TIMEOUT


def redis_transport_options(visibility_timeout: float) -> dict[str, Any]:
    """Redelivery after ``visibility_timeout``, checked often enough to matter.

    kombu looks for expired unacked messages every ``unacked_restore_interval`` seconds
    but scans only every ``unacked_restore_throttle``-th time (10 s x 10 by default, so
    100 s): fine for 900 s, far too slow for a short timeout. Scan about ten times per
    timeout, at most every second and at least every 100 s.
    """
    period = min(max(visibility_timeout / 10, 1.0), 100.0)
    throttle = 10 if period >= 10 else 1
    return {
        "visibility_timeout": visibility_timeout,
        "unacked_restore_interval": max(1, round(period / throttle)),
        "unacked_restore_throttle": throttle,
    }


# The embedded broker's transport (tasks/fsbroker.py: atomic writes and claims).
FILESYSTEM_TRANSPORT = "tasks.fsbroker:Transport"
# Seconds between two looks at the filesystem broker's folder (local demo and tests only).
FILESYSTEM_POLLING_INTERVAL = 0.1


def _filesystem_options(broker_url: str) -> dict[str, Any]:
    """``filesystem:///some/dir`` -> the atomic filesystem transport rooted at that dir."""
    folder = broker_url.removeprefix("filesystem://") or os.path.join(
        tempfile.gettempdir(), "stt-workers-broker"
    )
    os.makedirs(folder, exist_ok=True)
    return {
        "data_folder_in": folder,
        "data_folder_out": folder,
        "control_folder": os.path.join(folder, "control"),
        "store_processed": False,
        # kombu polls the folder, by default once a second: a retried poll sat there for
        # 0.5 s (median) to 0.9 s (p90) before the worker saw it, longer than the short
        # countdowns it carried (docs/benchmarks.md, "The demo's one-second polls"). Listing
        # a local folder ten times a second costs next to nothing.
        "polling_interval": FILESYSTEM_POLLING_INTERVAL,
    }


def producer_config(settings: Settings | None = None) -> dict[str, Any]:
    """The broker settings every process that enqueues stt tasks needs, workers included.

    A web app merges these into its own Celery app (examples/README.md): the broker URL,
    the route of ``stt.*`` to the ``stt`` queue and, on RabbitMQ, that queue's quorum
    declaration on a topic exchange and publisher confirms. Without them a countdown
    published by the web app would not go through the broker's delayed delivery.
    """
    settings = settings or get_settings()
    broker_url = settings.broker_url
    kind = broker_kind(broker_url)
    config: dict[str, Any] = {"task_routes": {"stt.*": {"queue": QUEUE_NAME}}}
    if kind is BrokerKind.RABBITMQ:
        config.update(
            task_queues=(stt_queue(),),
            # Wait for the broker's ack of every publish: a message RabbitMQ refuses (a
            # full delay queue rejects publishes) raises instead of vanishing.
            broker_transport_options={"confirm_publish": True},
        )
    elif kind is BrokerKind.FILESYSTEM:
        config["broker_transport_options"] = _filesystem_options(broker_url)
        broker_url = "filesystem://"
        # Not kombu's own: it lets a consumer read a message before it is written.
        config["broker_transport"] = FILESYSTEM_TRANSPORT
    elif broker_url.startswith("sqla+"):
        # kombu's SQLAlchemy transport passes every option to create_engine (so not even
        # polling_interval: it polls once a second). The demo's measured alternative
        # (docs/operations.md, "The embedded broker").
        config["broker_transport_options"] = {}
    else:
        config["broker_transport_options"] = redis_transport_options(settings.visibility_timeout)
    config["broker_url"] = broker_url
    return config


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for this project; see docs/operations.md for the reasoning."""
    config = producer_config(settings)
    if "task_queues" in config:  # RabbitMQ: any queue Celery declares for us is quorum too
        config["task_default_queue_type"] = "quorum"
        # Confirms for task messages, none for events: a confirmed event publish from a
        # pool thread deadlocks against the worker's event loop (tasks/consumer.py).
        config["worker_consumer"] = "tasks.consumer:Consumer"
    if settings.broker_url.startswith("redis://"):
        # One Redis client per channel (tasks/redis_transport.py); web apps keep kombu's.
        config["broker_transport"] = "tasks.redis_transport:Transport"
    return {
        "broker_transport": None,
        **config,
        "task_default_queue": QUEUE_NAME,
        "broker_connection_retry_on_startup": True,
        # Celery gives up after 100 reconnects by default and exits with status 0, which
        # supervisors take for a clean stop (celery#7358): a worker waits out any outage.
        "broker_connection_max_retries": None,
        "result_backend": settings.result_backend,
        # The store is where results live; Celery's result backend is not needed.
        "task_ignore_result": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # A task is acknowledged only after it ran, and a worker that dies mid-task gives
        # its message back: together with idempotent steps, no job is lost.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Where the broker cannot hold countdowns (Redis), the worker holds them, ~12 KB
        # each: cap them so a worker cannot run out of memory (tasks/broker.py). Past the
        # cap the worker fetches nothing new until a held one is due; the rest wait in the
        # broker for it or another worker.
        "worker_eta_task_limit": settings.eta_task_limit or None,
        "worker_prefetch_multiplier": 4,
        # Events for Flower.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        # Run `stt-workers beat` once per deployment for this (STT_SWEEP_INTERVAL).
        "beat_schedule": beat_schedule(settings),
    }


# How often beat sends stt.prune when retention is on: often enough that each run has
# little to do (a day's jobs come due spread over 96 runs), rarely enough to cost nothing.
PRUNE_EVERY = 900.0


def beat_schedule(settings: Settings) -> dict[str, Any]:
    """The sweeper every ``STT_SWEEP_INTERVAL``; with ``STT_RETENTION_DAYS`` > 0, the prune;
    with ``STT_SPEED_FIT_INTERVAL`` > 0, the refit of each model's speed (tasks/learn.py)."""
    sweep = {"task": "stt.sweep", "schedule": settings.sweep_interval}
    schedule: dict[str, Any] = {"stt-sweep": sweep}
    if settings.retention_days > 0:
        schedule["stt-prune"] = {
            "task": "stt.prune",
            "schedule": PRUNE_EVERY,
            "kwargs": {
                "days": settings.retention_days,
                "keep_text": settings.retention_keep_text,
            },
            # A prune nobody ran before the next one is due is not worth running.
            "options": {"expires": PRUNE_EVERY},
        }
    if settings.speed_fit_interval > 0:
        schedule["stt-fit-speed"] = {
            "task": "stt.fit_speed",
            "schedule": settings.speed_fit_interval,
            "options": {"expires": settings.speed_fit_interval},
        }
    return schedule
