"""WSGI entry point (``gunicorn stt_site.wsgi``)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stt_site.settings")
application = get_wsgi_application()
