"""Re-schedule a running task for later without raising ``Retry``.

``raise self.retry(countdown=...)`` publishes the task again and then raises ``Retry``,
which the worker turns into an ``ExceptionInfo`` (a formatted traceback), a log line with
it and a ``task-retried`` event: for a poll that re-schedules itself every few seconds
that bookkeeping cost more CPU than the poll (issue 13, bench/poll_cost.py). A planned
wait is not an error, so ``reschedule`` publishes the same message (Celery's own
``retry(throw=False)``: same task id, retries + 1, the chain riding along) and lets the
run end normally.

The run must then not continue the chain: Celery dispatches a successful task's
``callbacks`` and ``chain`` from the request when it returns, and the chain belongs to the
re-published message now. Clearing them on the request is the one step here that relies
on Celery internals (``celery.app.trace`` reads them after the task returns); the
end-to-end tests (a job polled many times is stored once) guard it.
"""

from __future__ import annotations

from typing import Any

from celery import Task

__all__ = ["reschedule"]


def reschedule(task: Task, countdown: float, **options: Any) -> None:
    """Publish ``task``'s current message again in ``countdown`` seconds; end this run."""
    task.retry(countdown=countdown, throw=False, max_retries=None, **options)
    task.request.chain = None
    task.request.callbacks = None
