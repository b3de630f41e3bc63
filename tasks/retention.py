"""Retention: delete finished jobs older than a window, or strip them to their text.

The store grows by one row per job, most of it the transcript's word timings
(docs/operations.md, "Sizing"); without pruning it grows without bound. ``prune``
removes (or, with ``keep_text``, empties the bulky ``raw_result``/``words``/``segments``
columns of) the jobs that are

* finished: a final status, and a callback, if the job has one, delivered or given up
  (a pending delivery still reads the row);
* stored before the cutoff (``stored_at``, indexed by migration 0004_retention).

It works in batches of ``BATCH_SIZE`` rows, one statement each, each its own short
transaction: ``DELETE ... WHERE id IN (SELECT id ... ORDER BY stored_at LIMIT 1000 FOR
UPDATE SKIP LOCKED)``. On PostgreSQL only those rows are locked, never the table, and a
row some other transaction holds is skipped rather than waited for (the next run takes
it), so workers writing new jobs never wait on a prune and two prunes never collide.
SQLite has one writer at a time whatever we do, so there each batch is short and a
pause between batches lets the workers' writes in.

Run it from the command line (``stt-workers prune --older-than 30d``) or let beat send
``stt.prune`` when ``STT_RETENTION_DAYS`` is above 0 (tasks/celeryconfig.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, func, null, or_, select, update
from sqlalchemy.sql.expression import Executable

from tasks.callbacks import CallbackStatus
from tasks.models import FINAL_JOB_STATUSES
from tasks.schema import JobRow
from tasks.store import Store

__all__ = [
    "BATCH_SIZE",
    "BULKY_COLUMNS",
    "SCHEDULE_BATCHES",
    "SQLITE_BATCH_SIZE",
    "PruneReport",
    "cutoff_for",
    "prunable",
    "prune",
]

log = logging.getLogger(__name__)

# Rows per statement: small enough that a batch holds its locks for milliseconds, large
# enough that a million rows take a thousand round trips, not a million.
BATCH_SIZE = 1000
# SQLite has one write lock for the whole database and a batch holds it throughout:
# smaller batches keep the workers' waits short (bench/prune.py: a writer's p99 wait
# 153 ms with 100, 720 ms with 1,000, on a loaded machine).
SQLITE_BATCH_SIZE = 100
# What ``keep_text`` empties: the columns that make a row large (docs/operations.md).
BULKY_COLUMNS = ("raw_result", "words", "segments")
# A scheduled run stops after this many batches (the next run goes on), so one run never
# holds a worker slot for long, even the first run after retention is turned on.
SCHEDULE_BATCHES = 200
# Between two batches on SQLite: its single writer lock is then free for the workers.
SQLITE_PAUSE = 0.05

_CALLBACK_DONE = (CallbackStatus.DELIVERED.value, CallbackStatus.FAILED.value)


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What one ``prune`` did (or, dry, would do)."""

    cutoff: datetime
    keep_text: bool
    dry_run: bool
    rows: int  # deleted (or emptied); with dry_run, how many would be
    batches: int  # statements that changed rows
    # A run stopped by ``max_batches`` may have left prunable rows behind.
    complete: bool = True

    @property
    def verb(self) -> str:
        return "emptied" if self.keep_text else "deleted"


def cutoff_for(older_than: timedelta, *, now: datetime) -> datetime:
    """The stored-at instant before which jobs are pruned; the window must be positive."""
    if older_than <= timedelta(0):
        raise ValueError(f"the retention window must be positive, got {older_than}")
    return now - older_than


_FINAL = [s.value for s in FINAL_JOB_STATUSES]


def _callback_done() -> ColumnElement[bool]:
    return or_(JobRow.callback_url.is_(None), JobRow.callback_status.in_(_CALLBACK_DONE))


def _not_emptied() -> ColumnElement[bool]:
    return or_(*(getattr(JobRow, c).is_not(None) for c in BULKY_COLUMNS))


def prunable(cutoff: datetime, *, keep_text: bool = False) -> ColumnElement[bool]:
    """The rows ``prune`` may touch (with ``keep_text``: only those not yet emptied)."""
    finished = and_(JobRow.status.in_(_FINAL), JobRow.stored_at < cutoff, _callback_done())
    return and_(finished, _not_emptied()) if keep_text else finished


def _batch(cutoff: datetime, size: int, *, keep_text: bool, after: datetime | None) -> Executable:
    """One batch's statement: the oldest ``size`` prunable rows nobody else holds.

    The inner SELECT walks the ``stored_at`` index from ``after`` (where the previous
    batch ended: rows already emptied are not walked again) and filters on nothing
    another index could serve: given the status too, SQLite's planner (no statistics)
    picked the ``status`` index and sorted every finished row per batch, work that grows
    with the table, instead of reading 1,000 entries of ``stored_at``. The status
    is checked on the outer statement: ``stored_at`` is only ever set together with a
    final status (``tasks.store``), so the check drops nothing, it only guarantees.
    Both statements have their plan pinned by tests/unit/test_retention_plan.py.
    """
    window = JobRow.stored_at < cutoff
    if after is not None:
        window = and_(JobRow.stored_at >= after, window)
    inner = (
        and_(window, _callback_done(), _not_emptied())
        if keep_text
        else and_(window, _callback_done())
    )
    ids = (
        select(JobRow.id)
        .where(inner)
        .order_by(JobRow.stored_at)
        .limit(size)
        .with_for_update(skip_locked=True)  # rendered on PostgreSQL; SQLite has no such clause
    )
    # ``status || ''``: the same test, in a form no index can serve, so the outer
    # statement finds its rows by primary key; SQLite otherwise walked the status index.
    which = and_(JobRow.id.in_(ids), (JobRow.status + "").in_(_FINAL))
    if keep_text:
        # null(), not None: None would be written as the JSON text 'null'.
        emptied = {column: null() for column in BULKY_COLUMNS}
        return update(JobRow).where(which).values(emptied).returning(JobRow.stored_at)
    return delete(JobRow).where(which).returning(JobRow.stored_at)


def _count(store: Store, condition: ColumnElement[bool]) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(select(func.count()).select_from(JobRow).where(condition)).scalar_one()
        )


def prune(
    store: Store,
    *,
    cutoff: datetime,
    keep_text: bool = False,
    dry_run: bool = False,
    batch_size: int | None = None,
    max_batches: int | None = None,
) -> PruneReport:
    """Delete (or empty, with ``keep_text``) finished jobs stored before ``cutoff``
    (see ``cutoff_for``), ``batch_size`` rows per transaction (default ``BATCH_SIZE``,
    ``SQLITE_BATCH_SIZE`` on SQLite); ``dry_run`` only counts them.

    Stops after a batch that was not full, or after ``max_batches`` batches.
    """
    sqlite = store.engine.dialect.name == "sqlite"
    if batch_size is None:
        batch_size = SQLITE_BATCH_SIZE if sqlite else BATCH_SIZE
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    condition = prunable(cutoff, keep_text=keep_text)
    if dry_run:
        return PruneReport(cutoff, keep_text, True, _count(store, condition), 0)
    pause = SQLITE_PAUSE if sqlite else 0.0
    rows = batches = 0
    after: datetime | None = None
    complete = False
    while max_batches is None or batches < max_batches:
        if batches and pause:
            time.sleep(pause)
        statement = _batch(cutoff, batch_size, keep_text=keep_text, after=after)
        with store.engine.begin() as conn:
            stored = [row[0] for row in conn.execute(statement)]
        if stored:
            batches += 1
            rows += len(stored)
            after = max(stored)
            log.debug("prune batch %d: %d rows", batches, len(stored))
        # A short batch took every row that matched and was free: nothing is left but
        # rows another transaction holds (skipped; the next run takes them).
        if len(stored) < batch_size:
            complete = True
            break
    if rows:
        more = "" if complete else " (more left for the next run)"
        log.info("pruned %d jobs stored before %s%s", rows, cutoff.isoformat(), more)
    return PruneReport(cutoff, keep_text, False, rows, batches, complete=complete)
