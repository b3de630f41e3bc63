"""The worker's Celery app, configured from the environment (see ``tasks.celeryconfig``).

Start a worker with ``stt-workers worker`` or ``celery -A workers.celery_app worker``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    celeryd_after_setup,
    worker_init,
)
from kombu.exceptions import OperationalError
from kombu.utils.url import maybe_sanitize_url

from tasks.broker import (
    BrokerKind,
    BrokerMisconfigured,
    broker_kind,
    declare_stt_queue,
    holds_countdowns_in_worker,
)
from tasks.celeryconfig import celery_config
from tasks.redact import ControlCharFilter
from tasks.settings import get_settings

__all__ = ["app", "check_broker", "log_where_countdowns_wait"]

log = logging.getLogger(__name__)

app = Celery("stt", include=["tasks.pipeline"], amqp="tasks.monitoring:QuietAMQP")
app.config_from_object(celery_config(get_settings()))
app.set_default()


def _neutralize_log_lines(logger: logging.Logger, **_: object) -> None:
    """Outside text in a log line (a generation id, an API error, a receiver's reply)
    cannot forge a line or send escape sequences: see ``tasks.redact.ControlCharFilter``."""
    for handler in logger.handlers:
        if not any(isinstance(f, ControlCharFilter) for f in handler.filters):
            handler.addFilter(ControlCharFilter())


after_setup_logger.connect(_neutralize_log_lines, weak=False)
after_setup_task_logger.connect(_neutralize_log_lines, weak=False)


def check_broker(celery: Celery) -> None:
    """Before consuming: refuse a classic stt queue on RabbitMQ.

    Raises ``BrokerMisconfigured`` (one line). A broker that cannot be reached now is not a
    verdict: Celery's own connection retries take over, and its consumer declares the
    queue again (failing there, too, on a classic queue).
    """
    url = str(celery.conf.broker_url)
    if broker_kind(url) is BrokerKind.RABBITMQ:
        try:
            with celery.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1)
                declare_stt_queue(connection, connection.virtual_host)
        except (OSError, OperationalError) as exc:
            print(f"warning: could not check the RabbitMQ queue: {exc}", file=sys.stderr)


def log_where_countdowns_wait(celery: Celery) -> None:
    """Say once, at start, whether this worker will hold waiting polls in its memory."""
    url = str(celery.conf.broker_url)
    if holds_countdowns_in_worker(celery):
        limit = celery.conf.worker_eta_task_limit
        log.warning(
            "broker %s keeps no delayed messages: this worker holds waiting polls in its own "
            "memory until due (~12 KB each, at most %s; worker_eta_task_limit), and a new "
            "worker does not share those already held. For scale use RabbitMQ with quorum "
            "queues (docs/operations.md, 'Choosing a broker').",
            maybe_sanitize_url(url),
            limit if limit else "unlimited",
        )
    else:
        log.info(
            "broker %s holds waiting polls (quorum queue, native delayed delivery)",
            maybe_sanitize_url(url),
        )


@worker_init.connect
def _check_broker_at_start(sender: Any = None, **_: Any) -> None:
    if getattr(sender, "app", None) is not app:
        return
    try:
        check_broker(app)
    except BrokerMisconfigured as exc:
        # One line and exit 1 (SystemExit passes through Celery's signal dispatch), before
        # Celery's consumer meets the same refusal and retries it forever.
        print(f"Error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


@celeryd_after_setup.connect
def _log_at_start(instance: Any = None, **_: Any) -> None:
    # After worker_init: only now is the worker's logging set up.
    if getattr(instance, "app", None) is app:
        log_where_countdowns_wait(app)
