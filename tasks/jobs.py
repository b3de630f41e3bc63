"""The public API for web apps: ``transcribe()`` enqueues, a handle reads the outcome.

Submitting and waiting are separate verbs (as in the AssemblyAI SDK): a web request calls
``transcribe()`` and returns at once; whoever needs the text later calls
``get_transcription()`` or ``handle.wait()``. Both read the store, never the broker.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery, current_app, current_task

from tasks import runtime
from tasks.broker import check_producer
from tasks.celeryconfig import celery_config
from tasks.models import JobStatus
from tasks.pipeline import pipeline_signature
from tasks.settings import get_settings
from tasks.store import JobRecord
from tasks.validation import validate_request

__all__ = ["DEFAULT_MODEL", "TranscriptionHandle", "get_transcription", "transcribe"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "openai/gpt-4o-mini-transcribe"


class TranscriptionHandle:
    """A reference to one job. Cheap to create from an id; every read goes to the store."""

    def __init__(self, job_id: str) -> None:
        self.id = job_id

    def __repr__(self) -> str:
        return f"TranscriptionHandle({self.id!r})"

    def record(self) -> JobRecord:
        record = get_transcription(self.id)
        if record is None:
            raise LookupError(f"no job {self.id!r} in the store")
        return record

    def status(self) -> JobStatus:
        return self.record().status

    def wait(self, timeout: float | None = None, *, interval: float = 0.5) -> JobRecord:
        """Block the *caller* (never a worker) until the job is final; ``TimeoutError`` after
        ``timeout`` seconds."""
        if current_task and current_task.request.id:
            raise RuntimeError(
                "TranscriptionHandle.wait() inside a Celery task would hold a worker slot; "
                "read the job in a task chained after stt.store instead"
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.record()
            if record.done:
                return record
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} still {record.status.value} after {timeout} s")
            time.sleep(interval)


def _celery_app() -> Celery:
    """The app to publish with: the caller's configured one, else ours.

    Django and Flask apps configure their own Celery app (see examples/); a plain script
    that did not gets one built from the environment, instead of Celery's unconfigured
    fallback that would talk AMQP to localhost.
    """
    app: Celery = current_app._get_current_object()
    if app.main == "default":  # Celery's own fallback: nobody configured an app
        app = Celery("stt", set_as_current=True)
        app.config_from_object(celery_config(get_settings()))
        app.set_default()
    return app


def transcribe(
    url: str,
    model: str = DEFAULT_MODEL,
    *,
    language: str | None = None,
    prompt: str | None = None,
    temperature: float | None = None,
    metadata: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    callback_url: str | None = None,
) -> TranscriptionHandle:
    """Validate, record and enqueue one transcription job; return its handle.

    Raises ``InvalidInput`` naming the field before anything is stored or enqueued, and
    ``BrokerMisconfigured`` if the app's Celery configuration lacks
    ``tasks.celeryconfig.producer_config()`` on RabbitMQ. With an
    ``idempotency_key`` seen before, returns that job's handle and enqueues nothing.
    With a ``callback_url``, the stored result is POSTed there when the job ends, signed
    with ``STT_CALLBACK_SECRET`` (see ``tasks.signing``); without that setting this raises
    ``ConfigurationError`` rather than accept a job whose callback could never be sent.
    """
    request = validate_request(
        url,
        model,
        language=language,
        prompt=prompt,
        temperature=temperature,
        metadata=metadata,
        idempotency_key=idempotency_key,
        callback_url=callback_url,
    )
    if request.callback_url is not None:
        get_settings().require_callback_secret()
    # Bind the shared tasks to a configured app, and refuse (before storing anything) one
    # that publishes to RabbitMQ without the quorum queue (tasks.broker).
    check_producer(_celery_app())
    store = runtime.get_store()
    record, created = store.create_job(request)
    if created:
        try:
            pipeline_signature(record.id).apply_async()
        except Exception as exc:
            # The row exists; say so rather than leave a job nobody will ever drive.
            store.finish(record.id, JobStatus.FAILED, error=f"could not enqueue: {exc}")
            raise
    return TranscriptionHandle(record.id)


def get_transcription(job_id: str) -> JobRecord | None:
    """The stored job, or ``None`` for an unknown id."""
    return runtime.get_store().get(job_id)
