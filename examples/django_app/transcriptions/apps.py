from django.apps import AppConfig


class TranscriptionsConfig(AppConfig):
    name = "transcriptions"
