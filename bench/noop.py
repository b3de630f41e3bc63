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


def _retry_once(task: Any, countdown: float) -> None:
    client = _redis()
    if client.exists(STOP_KEY):
        return
    client.incr(RETRIES_KEY)
    raise task.retry(countdown=countdown, max_retries=None)


@shared_task(name="bench.retry_floor", bind=True)
def retry_floor(self: Any, countdown: float) -> None:
    """``self.retry(countdown)`` forever, with Celery's default task events."""
    _retry_once(self, countdown)


@shared_task(name="bench.retry_floor_quiet", bind=True, send_events=False)
def retry_floor_quiet(self: Any, countdown: float) -> None:
    """The same without task events (as ``stt.poll`` runs)."""
    _retry_once(self, countdown)
