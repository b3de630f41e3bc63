"""The worker's Celery app, configured from the environment (see ``tasks.celeryconfig``).

Start a worker with ``stt-workers worker`` or ``celery -A workers.celery_app worker``.
"""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

from tasks.celeryconfig import celery_config
from tasks.redact import ControlCharFilter
from tasks.settings import get_settings

__all__ = ["app"]

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
