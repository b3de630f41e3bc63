"""The project's Celery app, configured from Django settings (``CELERY_*`` names).

The web process only *enqueues* transcriptions; the workers are ``stt-workers worker``
processes with the same ``STT_*`` environment (they consume the ``stt`` queue).
"""

import os

from celery import Celery

from tasks.celeryconfig import producer_config

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stt_site.settings")

# include: our tasks are shared tasks in tasks.pipeline; with it, a worker started as
# `celery -A stt_site worker -Q stt` could run them too (stt-workers worker is preferred:
# it applies tasks.celeryconfig's reliability settings).
app = Celery("stt_site", include=["tasks.pipeline"])
app.config_from_object("django.conf:settings", namespace="CELERY")
# STT_BROKER_URL, the route of stt.* to the workers' "stt" queue (the project's own tasks
# keep theirs) and the broker's delivery options: on RabbitMQ the quorum queue on a topic
# exchange and publisher confirms, without which transcribe() refuses to publish.
app.conf.update(producer_config())
app.autodiscover_tasks()
# Celery's "current app" is per thread; make this the default too, so views served by
# other threads (runserver, gunicorn --threads) publish with it and not with Celery's
# unconfigured fallback.
app.set_default()
