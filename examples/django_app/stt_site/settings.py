"""Settings for the example project. Everything secret or deployment-specific comes from
the environment; the ``STT_*`` variables are the same ones the workers read."""

import os

from tasks.celeryconfig import VISIBILITY_TIMEOUT

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
CELERY_BROKER_URL = os.environ.get("STT_BROKER_URL", "redis://127.0.0.1:6379/0")
# The stt-workers consume the "stt" queue; the project's own tasks keep their queue.
CELERY_TASK_ROUTES = {"stt.*": {"queue": "stt"}}
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": VISIBILITY_TIMEOUT}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True  # results live in the stt-workers store

# --- Completion callbacks ---
# The key the workers sign callbacks with (the same STT_CALLBACK_SECRET), and this app's
# public URL of the receiver view; unset -> no callbacks, poll GET /jobs/<id> instead.
STT_CALLBACK_SECRET = os.environ.get("STT_CALLBACK_SECRET")
STT_CALLBACK_URL = os.environ.get("STT_CALLBACK_URL")
