"""One error taxonomy for the whole pipeline.

Every failure the pipeline meets is one of these. The split that matters to a task is
``TransientError`` (try again later; may carry the server's ``Retry-After``) versus
``PermanentError`` (retrying cannot help: store the job as failed with this message).
``RequestTimeout`` (a ``TransientError``) says a request did not finish within its total
deadline; ``EnqueueError`` (also transient) says ``transcribe()`` could not record or
enqueue a job; ``DestinationRefused`` (permanent) says a callback would have connected to
an address the policy forbids (``tasks.netguard``).
``InvalidInput`` is raised before anything is enqueued and names the offending field;
``ConfigurationError`` names the offending environment variable; ``SchemaOutOfDate``
says the database needs ``stt-workers migrate`` before this code can use it.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "DestinationRefused",
    "EnqueueError",
    "IdempotencyKeyReused",
    "InvalidInput",
    "PermanentError",
    "RateLimited",
    "RequestTimeout",
    "STTError",
    "SchemaMismatch",
    "SchemaOutOfDate",
    "TransientError",
]


class STTError(Exception):
    """Base of every error this package raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.request_id = request_id

    def __str__(self) -> str:
        parts = [self.message]
        if self.status_code is not None:
            parts.append(f"HTTP {self.status_code}")
        if self.request_id:
            parts.append(f"request id {self.request_id}")
        return " | ".join(parts)


class TransientError(STTError):
    """A failure that may go away on its own: 429, 5xx, timeouts, dropped connections."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, request_id=request_id)
        self.retry_after = retry_after


class RateLimited(TransientError):
    """Our own limit said "not yet": the request was never sent; come back in ``retry_after``.

    Raised by the global rate limiter and the in-flight cap (``tasks.ratelimit``), before
    any HTTP request. A task re-schedules itself for ``retry_after`` seconds and does not
    count it as an attempt: nothing failed. It is a ``TransientError`` so that code which
    does not know it still does the safe thing (try again later).
    """

    retry_after: float

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, retry_after=retry_after)


class RequestTimeout(TransientError):
    """A request did not finish in time: connect, or the whole exchange past its deadline.

    ``seconds`` is the limit that was hit. The deadline is total (connect + send +
    receive): a server trickling one byte at a time cannot stretch it (``tasks.deadline``).
    """

    def __init__(self, message: str, *, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


class EnqueueError(TransientError):
    """``transcribe()`` could not record or enqueue the job: the broker or the database is
    unreachable. Nothing will run; try again later. ``setting`` names what to check
    (``STT_BROKER_URL`` or ``STT_DATABASE_URL``); ``job_id`` is the recorded job, if any.
    """

    def __init__(self, message: str, *, setting: str, job_id: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting
        self.job_id = job_id


class PermanentError(STTError):
    """A failure no retry can fix: 400/401/403/404, malformed or unknown answers."""


class DestinationRefused(PermanentError):
    """A callback URL that names, or resolves to, an address callbacks may not reach
    (loopback, private, link-local, ...; see ``tasks.netguard``)."""


class InvalidInput(STTError, ValueError):
    """Rejected input, raised before anything is enqueued; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message  # without the field: for callers that name the field already


class IdempotencyKeyReused(InvalidInput):
    """An idempotency key sent again with other parameters than its first request.

    As Stripe answers ``idempotency_error``: the key names one request, so reusing it for
    another is the caller's bug. Returning the first request's job would hand one caller
    another's transcript. The message quotes neither request.
    """

    def __init__(self) -> None:
        super().__init__(
            "idempotency_key",
            "was already used with other parameters; a key can only be retried with the "
            "same parameters as its first request (use a new key for a new request)",
        )


class ConfigurationError(STTError):
    """A setting read from the environment is unusable; ``variable`` names it."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


class SchemaOutOfDate(STTError):
    """The database's schema is behind this code's: ``stt-workers migrate`` fixes it.

    Raised when a process opens the store, so a worker stops at start with this one line
    instead of failing every task on a missing column.
    """

    def __init__(self, current: str, needed: str) -> None:
        super().__init__(
            f"database schema is at {current}, code needs {needed}: run `stt-workers migrate`"
        )
        self.current = current
        self.needed = needed


class SchemaMismatch(STTError):
    """A table of ours that no release made: migrating it would hide the difference."""
