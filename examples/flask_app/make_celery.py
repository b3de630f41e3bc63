"""``celery -A make_celery worker -Q stt`` / ``beat``: the Flask docs' worker entry point."""

from stt_flask import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
