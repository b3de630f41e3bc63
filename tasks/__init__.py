"""aiml-stt-workers: Celery tasks that turn audio into text through the AI/ML API.

Web apps use ``transcribe()`` to enqueue and ``get_transcription()`` to read::

    from tasks import transcribe
    handle = transcribe("https://example.com/call.mp3", model="openai/gpt-4o-mini-transcribe")
    record = handle.wait(timeout=600)
    print(record.status, record.text)

Names are imported lazily, so ``import tasks.catalog`` (``stt-workers models``, a web
app's model picker) does not pull in Celery, SQLAlchemy and the HTTP client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.errors import (
        ConfigurationError,
        EnqueueError,
        IdempotencyKeyReused,
        InvalidInput,
        PermanentError,
        STTError,
        TransientError,
    )
    from tasks.jobs import DEFAULT_MODEL, TranscriptionHandle, get_transcription, transcribe
    from tasks.models import JobStatus
    from tasks.store import JobRecord

_EXPORTS = {
    "ConfigurationError": "tasks.errors",
    "EnqueueError": "tasks.errors",
    "IdempotencyKeyReused": "tasks.errors",
    "InvalidInput": "tasks.errors",
    "PermanentError": "tasks.errors",
    "STTError": "tasks.errors",
    "TransientError": "tasks.errors",
    "DEFAULT_MODEL": "tasks.jobs",
    "TranscriptionHandle": "tasks.jobs",
    "get_transcription": "tasks.jobs",
    "transcribe": "tasks.jobs",
    "JobStatus": "tasks.models",
    "JobRecord": "tasks.store",
}

__all__ = [
    "DEFAULT_MODEL",
    "ConfigurationError",
    "EnqueueError",
    "IdempotencyKeyReused",
    "InvalidInput",
    "JobRecord",
    "JobStatus",
    "PermanentError",
    "STTError",
    "TranscriptionHandle",
    "TransientError",
    "get_transcription",
    "transcribe",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tasks' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
