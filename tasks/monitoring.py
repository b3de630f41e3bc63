"""What Flower and the worker's log show of a task's arguments: readable and redacted.

Celery shows a task's arguments as ``argsrepr``/``kwargsrepr``, computed when the
message is published: by the web app for ``stt.submit``, by the worker for each later
step of the chain and for every retry. ``ReadableTask`` (the base of the ``stt.*``
tasks) sets both there, so every publisher produces the same view: ids as they are,
deadlines as UTC times, and any URL in any string with its query string cut
(``tasks.redact``). The arguments themselves are unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from celery import Task
from celery.app.amqp import AMQP
from celery.utils.saferepr import saferepr

from tasks.redact import redact_text

__all__ = ["QuietAMQP", "ReadableTask", "readable"]

REPR_MAX_CHARS = 1024  # Celery's own default for argsrepr


def readable(value: Any, key: str | None = None) -> Any:
    """``value`` as it should be shown: redacted strings, deadlines as ISO times."""
    if isinstance(value, str):
        return redact_text(value)
    if key == "deadline" and isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")
    if isinstance(value, dict):
        return {k: readable(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(readable(v) for v in value)
    return value


class ReadableTask(Task):  # type: ignore[misc]  # Celery is untyped
    """A task whose published messages carry a readable, redacted view of its arguments."""

    def apply_async(
        self,
        args: Any = None,
        kwargs: Any = None,
        *more: Any,
        **options: Any,
    ) -> Any:
        if options.get("argsrepr") is None:
            options["argsrepr"] = saferepr(readable(tuple(args or ())), REPR_MAX_CHARS)
        if options.get("kwargsrepr") is None:
            options["kwargsrepr"] = saferepr(readable(dict(kwargs or {})), REPR_MAX_CHARS)
        return super().apply_async(args, kwargs, *more, **options)


class QuietAMQP(AMQP):  # type: ignore[misc]  # Celery is untyped
    """Celery's message factory: a task with ``send_events = False`` sends no events at all.

    ``send_events = False`` silences what the worker sends about a task, but not the
    ``task-sent`` event its publisher adds (``task_send_sent_event``); this drops that one
    too. ``stt.poll`` is such a task: a waiting job polls every few seconds for minutes,
    and its events (four PUBLISHes per poll, and Flower's memory) cost more worker CPU than
    the poll itself (issue 13, bench/poll_cost.py). Flower keeps submit, store and
    callback; the polls' own numbers are in the store and the metrics.
    """

    def as_task_v2(self, task_id: str, name: str, *args: Any, **kwargs: Any) -> Any:
        message = super().as_task_v2(task_id, name, *args, **kwargs)
        if message.sent_event is not None:
            task = self.app.tasks.get(name)
            if task is not None and not task.send_events:
                message = message._replace(sent_event=None)
        return message
