"""Completion callbacks: POST a finished job's stored result to the job's ``callback_url``.

Web apps then need no polling of their own. The flow, after ``stt.store`` wrote the final
row: ``stt.store`` enqueues ``stt.callback`` (once: it then sets ``callback_status`` from
NULL to ``pending``), and ``stt.callback`` calls ``deliver_callback`` below, retrying with
``tasks.polling.callback_retry_delay`` until the receiver answers 2xx (``delivered``) or
``STT_CALLBACK_MAX_ATTEMPTS`` attempts failed (``failed``, with the last error). The job's
own status never changes because of its callback.

Delivery is at-least-once: a worker killed between the receiver's 2xx and the row update
makes the redelivered task POST again. Receivers should treat ``id`` as an idempotency key.
A delivered (or failed) callback is never sent again, whatever is redelivered.

The body is ``job_view(record)`` as compact JSON (sorted keys, UTF-8), signed as described
in ``tasks.signing``. It holds no secret: the API key is never in a row, and the audio URL
is redacted (presigned query strings carry credentials).

Each attempt has a total deadline, ``STT_CALLBACK_TIMEOUT`` (10 s, as GitHub gives a
webhook), for connect + send + receive (``tasks.deadline``): a receiver trickling its answer
holds a worker slot that long and no longer. The POST goes only to public addresses or
networks in ``STT_CALLBACK_ALLOW_NETWORKS``, checked on the address actually connected to
(``tasks.netguard``); a refused address fails the callback at once, without retries. No
environment proxy and no ``~/.netrc`` is used: its credentials would go to any receiver.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import requests
from sqlalchemy import ColumnElement, func, or_, select, update

from tasks import metrics
from tasks.deadline import deadline
from tasks.envelopes import truncate
from tasks.errors import DestinationRefused
from tasks.netguard import guarded_session
from tasks.polling import callback_retry_delay
from tasks.redact import neutralize, redact_url
from tasks.schema import JobRow
from tasks.settings import IPNetwork
from tasks.signing import JOB_ID_HEADER, sign
from tasks.store import JobRecord, Store

__all__ = [
    "CallbackStatus",
    "RetryDelivery",
    "deliver_callback",
    "encode_body",
    "job_view",
    "mark_callback_pending",
    "needs_callback",
]

log = logging.getLogger(__name__)

USER_AGENT = "aiml-stt-workers-callback/1"
# How much of a failing receiver's answer goes into callback_error (and is read at all).
ERROR_BODY_CHARS = 200
# Columns a receiver has no use for: the vendor's raw answer (``words``/``segments``/``text``
# carry it normalized, and it can be large), and the callback's own delivery state, which
# changes between attempts while the body must not.
_HIDDEN = frozenset(
    {
        "raw_result",
        "callback_url",
        "callback_status",
        "callback_attempts",
        "callback_error",
        "callback_delivered_at",
        "callback_next_at",
        "request_fingerprint",  # internal: what a reused idempotency key is compared on
    }
)


class CallbackStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


_FINAL = (CallbackStatus.DELIVERED.value, CallbackStatus.FAILED.value)


def _open() -> ColumnElement[bool]:
    # NULL NOT IN (...) is NULL in SQL, so "not final" must name NULL itself: the task may
    # run before stt.store marked the row pending.
    return or_(JobRow.callback_status.is_(None), JobRow.callback_status.not_in(_FINAL))


@dataclass(frozen=True, slots=True)
class RetryDelivery:
    """Attempt ``attempt`` failed with ``error``; try again after ``delay`` seconds."""

    delay: float
    attempt: int
    error: str


def job_view(record: JobRecord) -> dict[str, Any]:
    """A job as a web app sees it: the callback body, and what the examples' GET returns.

    The stored row as plain JSON (ISO 8601 datetimes), minus ``_HIDDEN``, with the audio URL
    redacted.
    """
    view: dict[str, Any] = {}
    for f in fields(record):
        if f.name in _HIDDEN:
            continue
        value = getattr(record, f.name)
        if f.name == "url":
            value = redact_url(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, StrEnum):
            value = value.value
        view[f.name] = value
    return view


def encode_body(view: dict[str, Any]) -> bytes:
    """The exact bytes that are sent and signed: same record, same bytes, every attempt."""
    return json.dumps(view, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def needs_callback(record: JobRecord) -> bool:
    """A finished job with a callback URL whose delivery was never started."""
    return record.done and record.callback_url is not None and record.callback_status is None


def mark_callback_pending(store: Store, job_id: str, *, now: datetime) -> None:
    """Note that ``stt.callback`` was enqueued (by ``stt.store`` or the sweeper) and is due
    ``now``, so a redelivered store does not enqueue it again and the sweeper knows when it
    is overdue. Called *after* enqueueing: a crash in between enqueues twice, never zero
    times."""
    with store.session() as session:
        session.execute(
            update(JobRow)
            .where(JobRow.id == job_id, _open())
            .values(callback_status=CallbackStatus.PENDING.value, callback_next_at=now)
        )


def _claim_attempt(store: Store, job_id: str) -> int | None:
    """Count one more attempt; the new count, or None if delivery already ended."""
    with store.session() as session:
        result = session.execute(
            update(JobRow)
            .where(JobRow.id == job_id, _open())
            .values(
                callback_attempts=func.coalesce(JobRow.callback_attempts, 0) + 1,
                callback_status=CallbackStatus.PENDING.value,
            )
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return None
        return session.scalar(select(JobRow.callback_attempts).where(JobRow.id == job_id))


def _set_state(
    store: Store,
    job_id: str,
    status: CallbackStatus,
    *,
    error: str | None,
    delivered_at: datetime | None = None,
) -> None:
    with store.session() as session:
        session.execute(
            update(JobRow)
            .where(JobRow.id == job_id, _open())
            .values(
                callback_status=status.value,
                callback_error=error,
                callback_delivered_at=delivered_at,
            )
        )


def _retry_after(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After", "").strip()
    return float(raw) if raw.isascii() and raw.isdigit() else None


def _post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: tuple[float, float],
    allow: Sequence[IPNetwork],
) -> tuple[int | None, str, float | None]:
    """POST once: (status code or None, error text, Retry-After). Reads at most a snippet of
    the answer, and follows no redirect (it could lead the signed result to another host).
    ``timeout`` is (connect, total); ``DestinationRefused`` if the address is not allowed."""
    shown = redact_url(url)
    connect, total = timeout
    with deadline(total) as scope, guarded_session(allow) as session:
        try:
            with session.post(
                url,
                data=body,
                headers=headers,
                timeout=(min(connect, total), total),
                allow_redirects=False,
                stream=True,
            ) as response:
                if 200 <= response.status_code < 300:
                    return response.status_code, "", None
                snippet = next(response.iter_content(ERROR_BODY_CHARS), b"")
                # The receiver's words go into a row, the CLI and the log: one line, no escapes.
                text = neutralize(truncate(snippet.decode("utf-8", errors="replace")))
                error = f"HTTP {response.status_code} from {shown}" + (f": {text}" if text else "")
                return response.status_code, error, _retry_after(response)
        except requests.RequestException as exc:
            if scope.expired:
                return None, f"no answer within {total:g} s (total) from {shown}", None
            # The exception's own message repeats the URL, query string included: leave it out.
            return None, f"{type(exc).__name__} posting to {shown}", None


def deliver_callback(
    store: Store,
    job_id: str,
    *,
    secret: str | None,
    max_attempts: int,
    timeout: tuple[float, float],
    now: datetime,
    allow_networks: Sequence[IPNetwork] = (),
) -> CallbackStatus | RetryDelivery | None:
    """Make one delivery attempt and record it; say whether to try again.

    ``timeout`` is (connect, total) seconds; ``allow_networks`` are the non-public networks
    the receiver may be in (``STT_CALLBACK_ALLOW_NETWORKS``).

    Returns None when there is nothing to deliver (unknown job, no URL, not finished), the
    final status when delivery ended (now or before: a redelivered task sends nothing), or
    ``RetryDelivery``.
    """
    record = store.get(job_id)
    if record is None or record.callback_url is None or not record.done:
        return None
    if record.callback_status in _FINAL:
        return CallbackStatus(record.callback_status)
    if not secret:
        # Never send unsigned: the receiver could not tell it from a forgery.
        _set_state(
            store,
            job_id,
            CallbackStatus.FAILED,
            error="STT_CALLBACK_SECRET is not set on the worker; the callback was not sent",
        )
        metrics.callback_attempt(None, last=True)
        return CallbackStatus.FAILED
    attempt = _claim_attempt(store, job_id)
    if attempt is None:  # another delivery finished meanwhile
        return None
    body = encode_body(job_view(record))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        JOB_ID_HEADER: record.id,
        **sign(secret, body, timestamp=int(now.timestamp())),
    }
    try:
        status, error, retry_after = _post(
            record.callback_url, body, headers, timeout, allow_networks
        )
    except DestinationRefused as exc:  # retrying cannot make the address allowed
        metrics.callback_attempt(None, last=True)
        _set_state(store, job_id, CallbackStatus.FAILED, error=str(exc))
        log.warning("job %s: %s", job_id, exc)
        return CallbackStatus.FAILED
    metrics.callback_attempt(status, last=attempt >= max_attempts)
    if status is not None and 200 <= status < 300:
        _set_state(store, job_id, CallbackStatus.DELIVERED, error=None, delivered_at=now)
        log.info("job %s: callback delivered on attempt %d", job_id, attempt)
        return CallbackStatus.DELIVERED
    if attempt >= max_attempts:
        message = f"gave up after {attempt} attempts; last: {error}"
        _set_state(store, job_id, CallbackStatus.FAILED, error=message)
        log.warning("job %s: callback failed: %s", job_id, message)
        return CallbackStatus.FAILED
    delay = callback_retry_delay(attempt, retry_after)
    with store.session() as session:
        session.execute(
            update(JobRow)
            .where(JobRow.id == job_id)
            .values(callback_error=error, callback_next_at=now + timedelta(seconds=delay))
        )
    return RetryDelivery(delay, attempt, error)
