"""Example Django project that transcribes audio with aiml-stt-workers.

Importing the Celery app here (as Celery's Django guide does) makes it the app
``transcribe()`` publishes with as soon as Django starts.
"""

from stt_site.celery import app as celery_app

__all__ = ("celery_app",)
