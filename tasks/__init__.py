"""aiml-stt-workers: Celery tasks that turn audio into text through the AI/ML API."""
