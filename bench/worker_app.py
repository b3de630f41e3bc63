"""The benchmarks' worker app: the production configuration plus the no-op baseline tasks.

Built from ``tasks.celeryconfig`` exactly as ``workers.celery_app`` is, so our pipeline and
the bare chain run on one worker with the same broker, serializer, acks and prefetch.
``BENCH_TASK_EVENTS=0`` turns the worker's task events off: a diagnostic switch
(bench/spread.py ``--no-task-events``), never the production setting.
"""

from __future__ import annotations

import os

from celery import Celery

from tasks.celeryconfig import celery_config
from tasks.settings import get_settings

app = Celery("stt", include=["tasks.pipeline", "bench.noop"], amqp="tasks.monitoring:QuietAMQP")
app.config_from_object(celery_config(get_settings()))
if os.environ.get("BENCH_TASK_EVENTS") == "0":
    app.conf.worker_send_task_events = False
    app.conf.task_send_sent_event = False
app.set_default()
