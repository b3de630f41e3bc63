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
from sqlalchemy.exc import DBAPIError

from tasks import runtime
from tasks.broker import check_producer
from tasks.celeryconfig import celery_config
from tasks.errors import EnqueueError, IdempotencyKeyReused
from tasks.models import JobStatus
from tasks.pipeline import pipeline_signature
from tasks.redact import redact_url
from tasks.settings import Settings, get_settings
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
    tenant: str | None = None,
    duration: float | None = None,
) -> TranscriptionHandle:
    """Validate, record and enqueue one transcription job; return its handle.

    Raises ``InvalidInput`` naming the field before anything is stored or enqueued, and
    ``BrokerMisconfigured`` if the app's Celery configuration lacks
    ``tasks.celeryconfig.producer_config()`` on RabbitMQ. With an
    ``idempotency_key`` seen before in the same ``tenant`` (a web app passes the caller's
    account: keys are unique per tenant), returns that job's handle and enqueues nothing;
    the same key with other parameters raises ``IdempotencyKeyReused`` (as Stripe does).
    A call whose enqueue failed does not spend its key: retrying it enqueues the job.
    With a ``callback_url``, the stored result is POSTed there when the job ends, signed
    with ``STT_CALLBACK_SECRET`` (see ``tasks.signing``); without that setting this raises
    ``ConfigurationError`` rather than accept a job whose callback could never be sent.
    The ``callback_url`` must reach a public address, or one in
    ``STT_CALLBACK_ALLOW_NETWORKS`` (``tasks.netguard``).

    ``duration``: the audio's length in seconds, when the caller knows it (call logs,
    upload metadata); the poll schedule then aims its first poll near the predicted
    finish (docs/polling.md). Without it the worker probes the audio's first bytes.

    Raises ``EnqueueError`` (a ``TransientError``) when the database or the broker cannot
    be reached: the one exception for "could not enqueue"; its ``setting`` names what to
    check. A web app answers it with 503 and lets the client try again.
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
        callback_allow=get_settings().callback_allow_networks,
        tenant=tenant,
        duration=duration,
    )
    if request.callback_url is not None:
        get_settings().require_callback_secret()
    # Bind the shared tasks to a configured app, and refuse (before storing anything) one
    # that publishes to RabbitMQ without the quorum queue (tasks.broker).
    check_producer(_celery_app())
    try:
        store = runtime.get_store()
        record, created = store.create_job(request)
    except DBAPIError as exc:
        raise _database_unreachable(get_settings(), exc) from exc
    if not created and record.fingerprint != request.fingerprint:
        raise IdempotencyKeyReused()
    if created:
        try:
            pipeline_signature(record.id).apply_async()
        except Exception as exc:
            # The row exists; say so rather than leave a job nobody will ever drive, and
            # free its key for the caller's retry.
            error = _broker_unreachable(get_settings(), exc, record.id)
            try:
                store.fail_unenqueued(record.id, error=error.message)
            except DBAPIError:
                log.warning("job %s: could not record that it was not enqueued", record.id)
            raise error from exc
    return TranscriptionHandle(record.id)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return (lines[0] if lines else type(orig).__name__)[:200]


def _database_unreachable(settings: Settings, exc: DBAPIError) -> EnqueueError:
    from sqlalchemy.engine import make_url

    where = make_url(settings.database_url).render_as_string(hide_password=True)
    return EnqueueError(
        f"could not record the job: database {where} unreachable ({_first_line(exc)}); "
        "check STT_DATABASE_URL and that the database is up",
        setting="STT_DATABASE_URL",
    )


def _broker_unreachable(settings: Settings, exc: Exception, job_id: str) -> EnqueueError:
    return EnqueueError(
        f"could not enqueue job {job_id}: broker {redact_url(settings.broker_url)} "
        f"unreachable ({_first_line(exc)}); check STT_BROKER_URL and that the broker is up",
        setting="STT_BROKER_URL",
        job_id=job_id,
    )


def get_transcription(job_id: str) -> JobRecord | None:
    """The stored job, or ``None`` for an unknown id."""
    return runtime.get_store().get(job_id)
