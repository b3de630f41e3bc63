"""Example Flask app that transcribes audio with aiml-stt-workers.

The app-factory Celery pattern from Flask's "Background Tasks with Celery": the Celery app
is built from ``app.config["CELERY"]`` inside ``create_app``. Configuration comes from the
environment: the ``STT_*`` variables the workers read, and ``FLASK_*`` ones
(``app.config.from_prefixed_env()``).
"""

import os
from typing import Any

from celery import Celery, Task
from flask import Flask

from tasks.celeryconfig import producer_config

__all__ = ["celery_init_app", "create_app"]


def celery_init_app(app: Flask) -> Celery:
    """The Flask docs' helper: tasks run inside the app context; this app is the default."""

    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    # include: our shared tasks, so `celery -A make_celery worker -Q stt` could run them
    # (stt-workers worker is preferred: it applies tasks.celeryconfig's settings).
    celery_app = Celery(app.name, task_cls=FlaskTask, include=["tasks.pipeline"])
    celery_app.config_from_object(app.config["CELERY"])
    # Celery's "current app" is per thread: the default is what request threads use.
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(
        # --- the few lines an existing app adds ---
        CELERY={
            # STT_BROKER_URL, the route of stt.* to the workers' "stt" queue (the app's
            # own tasks keep theirs) and the broker's delivery options: on RabbitMQ the
            # quorum queue on a topic exchange and publisher confirms.
            **producer_config(),
            "task_serializer": "json",
            "accept_content": ["json"],
            "task_ignore_result": True,  # results live in the stt-workers store
        },
        # The key the workers sign callbacks with, and this app's public receiver URL;
        # unset -> no callbacks, poll GET /jobs/<id> instead.
        STT_CALLBACK_SECRET=os.environ.get("STT_CALLBACK_SECRET"),
        STT_CALLBACK_URL=os.environ.get("STT_CALLBACK_URL"),
    )
    app.config.from_prefixed_env()
    if test_config:
        app.config.update(test_config)
    celery_init_app(app)

    from stt_flask import views

    app.register_blueprint(views.bp)
    return app
