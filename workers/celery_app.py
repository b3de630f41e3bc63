"""The worker's Celery app, configured from the environment (see ``tasks.celeryconfig``).

Start a worker with ``stt-workers worker`` or ``celery -A workers.celery_app worker``.
"""

from __future__ import annotations

from celery import Celery

from tasks.celeryconfig import celery_config
from tasks.settings import get_settings

__all__ = ["app"]

app = Celery("stt", include=["tasks.pipeline"], amqp="tasks.monitoring:QuietAMQP")
app.config_from_object(celery_config(get_settings()))
app.set_default()
