"""The benchmarks' worker app: the production configuration plus the no-op baseline tasks.

Built from ``tasks.celeryconfig`` exactly as ``workers.celery_app`` is, so our pipeline and
the bare chain run on one worker with the same broker, serializer, acks and prefetch.
"""

from __future__ import annotations

from celery import Celery

from tasks.celeryconfig import celery_config
from tasks.settings import get_settings

app = Celery("stt", include=["tasks.pipeline", "bench.noop"], amqp="tasks.monitoring:QuietAMQP")
app.config_from_object(celery_config(get_settings()))
app.set_default()
