"""Settings for the example project. Everything secret or deployment-specific comes from
the environment; the ``STT_*`` variables are the same ones the workers read."""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-for-production")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")

INSTALLED_APPS = ["transcriptions"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "stt_site.urls"
WSGI_APPLICATION = "stt_site.wsgi.application"
# The jobs live in the stt-workers store (STT_DATABASE_URL), not in Django's database.
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

# --- Celery: the few lines an existing project adds (read through the CELERY_ namespace) ---
# The broker (STT_BROKER_URL), the stt queue and its route come from
# tasks.celeryconfig.producer_config(), merged in stt_site/celery.py.
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True  # results live in the stt-workers store

# --- Completion callbacks ---
# The key the workers sign callbacks with (the same STT_CALLBACK_SECRET), and this app's
# public URL of the receiver view; unset -> no callbacks, poll GET /jobs/<id> instead.
STT_CALLBACK_SECRET = os.environ.get("STT_CALLBACK_SECRET")
STT_CALLBACK_URL = os.environ.get("STT_CALLBACK_URL")
