"""The baseline of benchmark 1: a bare Celery chain of three tasks that do nothing.

``bench.noop`` passes a small dict on, as ``stt.submit`` and ``stt.poll`` do; the last one
counts itself done with one Redis ``INCR`` (the cheapest observable "stored"), so the bench
can wait for the whole chain as it waits for our rows.
"""

from __future__ import annotations

import functools
from typing import Any

import redis
from celery import shared_task

from tasks.reschedule import reschedule
from tasks.settings import get_settings

DONE_KEY = "bench:noop:done"


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(get_settings().broker_url)


@shared_task(name="bench.noop")
def noop(message: dict[str, Any]) -> dict[str, Any]:
    return message


@shared_task(name="bench.noop_done")
def noop_done(message: dict[str, Any]) -> None:
    _redis().incr(DONE_KEY)


# -- bench/poll_cost.py's floor: a bare self-retrying task -----------------------------------

RETRIES_KEY = "bench:retry:count"
STOP_KEY = "bench:retry:stop"


# ``max_retries=None`` on the task, not in the ``retry()`` call: there ``None`` means "the
# task's own cap" (Celery's default 3), and a floor capped at 3 retries measured almost no
# polls.
_FOREVER: dict[str, Any] = {"bind": True, "max_retries": None}


def _counted(task: Any) -> bool:
    client = _redis()
    if client.exists(STOP_KEY):
        return False
    client.incr(RETRIES_KEY)
    return True


@shared_task(name="bench.retry_floor", **_FOREVER)
def retry_floor(self: Any, countdown: float) -> None:
    """``raise self.retry(countdown)`` forever, with Celery's default task events."""
    if _counted(self):
        raise self.retry(countdown=countdown)


@shared_task(name="bench.retry_floor_quiet", send_events=False, **_FOREVER)
def retry_floor_quiet(self: Any, countdown: float) -> None:
    """The same without task events (as ``stt.poll`` runs)."""
    if _counted(self):
        raise self.retry(countdown=countdown)


@shared_task(name="bench.reschedule_floor", send_events=False, **_FOREVER)
def reschedule_floor(self: Any, countdown: float) -> None:
    """``stt.poll``'s own way of waiting (``tasks.reschedule``: no ``Retry`` raised, no
    events) and nothing else: what a poll costs before it asks the server anything."""
    if _counted(self):
        reschedule(self, countdown)
