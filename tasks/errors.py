"""One error taxonomy for the whole pipeline.

Every failure the pipeline meets is one of these. The split that matters to a task is
``TransientError`` (try again later; may carry the server's ``Retry-After``) versus
``PermanentError`` (retrying cannot help: store the job as failed with this message).
``InvalidInput`` is raised before anything is enqueued and names the offending field;
``ConfigurationError`` names the offending environment variable; ``SchemaOutOfDate``
says the database needs ``stt-workers migrate`` before this code can use it.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "InvalidInput",
    "PermanentError",
    "RateLimited",
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


class PermanentError(STTError):
    """A failure no retry can fix: 400/401/403/404, malformed or unknown answers."""


class InvalidInput(STTError, ValueError):
    """Rejected input, raised before anything is enqueued; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message  # without the field: for callers that name the field already


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
