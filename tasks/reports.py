"""Operational reports from the store: job stats (counts, latency, polls, throughput) and usage.

The store already holds every timestamp and usage figure a job goes through, so these are
plain queries; no metrics pipeline is needed to answer "how are we doing" and "what did it
cost". Counts and sums are SQL aggregates (one row per group comes back, however big the
table); percentiles need the individual values, so only the few columns they are computed
from are fetched. Everything here runs unchanged on SQLite and PostgreSQL.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, String, case, func, literal_column, select, type_coerce

from tasks.models import JobStatus
from tasks.schema import JobRow
from tasks.store import Store, utcnow

__all__ = [
    "GroupBy",
    "JobStats",
    "Summary",
    "Throughput",
    "UsageReport",
    "UsageRow",
    "job_stats",
    "parse_time_bound",
    "percentile",
    "summarize",
    "usage_report",
]

THROUGHPUT_WINDOW = timedelta(hours=1)


# -- time bounds -----------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time_bound(raw: str, *, now: datetime) -> datetime:
    """``"1h"``/``"30m"``/``"7d"`` (that long before ``now``) or an ISO date/time, as UTC.

    A date or time without an offset is taken as UTC, the zone every stored timestamp
    and every ``--by day`` bucket is in. ``ValueError`` says what is accepted.
    """
    match = _DURATION.match(raw)
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
        return now - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ValueError(
            f"expected a duration like 30m, 1h, 7d or an ISO date/time like 2026-11-25 "
            f"or 2026-11-25T12:00Z, got {raw!r}"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# -- distributions -----------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted values, interpolating between closest ranks.

    The same definition as PostgreSQL's ``percentile_cont`` and NumPy's default, so the
    figures match what an operator gets from SQL or a notebook.
    """
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True, slots=True)
class Summary:
    """A distribution in a few numbers; all ``None`` when there were no values."""

    count: int
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        return Summary(count=0)
    ordered = sorted(values)
    return Summary(
        count=len(ordered),
        mean=math.fsum(ordered) / len(ordered),
        p50=percentile(ordered, 0.50),
        p90=percentile(ordered, 0.90),
        p99=percentile(ordered, 0.99),
        max=ordered[-1],
    )


# -- stats -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Throughput:
    """Jobs that reached a final state in ``[start, end]``."""

    start: datetime
    end: datetime
    stored: int
    completed: int

    @property
    def per_minute(self) -> float:
        minutes = (self.end - self.start).total_seconds() / 60.0
        return self.stored / minutes if minutes > 0 else 0.0


@dataclass(frozen=True, slots=True)
class JobStats:
    """What ``stt-workers stats`` shows.

    ``counts`` covers jobs *enqueued* since ``since`` (every status, zeros included);
    the latency and poll figures cover jobs *completed* (stored) since ``since``, so a
    slow job counts in the window in which it finished rather than vanishing from it.
    """

    since: datetime | None
    now: datetime
    counts: dict[str, int]
    enqueue_to_stored: Summary  # seconds
    finish_to_stored: Summary  # seconds: server finish seen -> result stored
    polls: Summary
    last_hour: Throughput

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def job_stats(
    store: Store, *, since: datetime | None = None, now: datetime | None = None
) -> JobStats:
    """Gather :class:`JobStats` (see there for which jobs each figure covers)."""
    now = now or utcnow()
    with store.session() as session:
        counted = select(JobRow.status, func.count()).group_by(JobRow.status)
        if since is not None:
            counted = counted.where(JobRow.enqueued_at >= since)
        counts = {status.value: 0 for status in JobStatus}
        counts.update({status: int(n) for status, n in session.execute(counted)})

        timings = select(
            JobRow.enqueued_at, JobRow.finished_at, JobRow.stored_at, JobRow.polls
        ).where(JobRow.status == JobStatus.COMPLETED.value, JobRow.stored_at.is_not(None))
        if since is not None:
            timings = timings.where(JobRow.stored_at >= since)
        total_s: list[float] = []
        server_s: list[float] = []
        polls: list[float] = []
        # Streamed in batches: only the three float lists stay in memory, not the rows.
        streamed = session.execute(timings, execution_options={"yield_per": 5000})
        for enqueued_at, finished_at, stored_at, n_polls in streamed:
            assert stored_at is not None  # the query's filter; mypy cannot see it
            total_s.append((stored_at - enqueued_at).total_seconds())
            if finished_at is not None:
                server_s.append((stored_at - finished_at).total_seconds())
            polls.append(float(n_polls or 0))

        start = now - THROUGHPUT_WINDOW
        stored, completed = session.execute(
            select(func.count(), func.sum(_is_completed())).where(
                JobRow.stored_at >= start, JobRow.stored_at <= now
            )
        ).one()
    return JobStats(
        since=since,
        now=now,
        counts=counts,
        enqueue_to_stored=summarize(total_s),
        finish_to_stored=summarize(server_s),
        polls=summarize(polls),
        last_hour=Throughput(
            start=start, end=now, stored=int(stored), completed=int(completed or 0)
        ),
    )


def _is_completed() -> ColumnElement[int]:
    return case((JobRow.status == JobStatus.COMPLETED.value, 1), else_=0)


# -- usage -------------------------------------------------------------------------------------


class GroupBy(StrEnum):
    MODEL = "model"
    DAY = "day"  # UTC calendar day of stored_at


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Totals for one group of final jobs (or for all of them)."""

    group: str
    jobs: int
    completed: int
    audio_minutes: float | None  # None: no job of the group reported its audio's length
    input_tokens: int
    audio_tokens: int
    text_tokens: int
    output_tokens: int
    total_tokens: int
    # Estimated, over the jobs whose cost is known; None when no job's is. ``unpriced``
    # counts completed jobs without a cost (a model with no price): a known part, not 0.
    cost_usd: float | None
    unpriced: int = 0


@dataclass(frozen=True, slots=True)
class UsageReport:
    by: GroupBy
    since: datetime | None
    until: datetime | None
    rows: tuple[UsageRow, ...]
    total: UsageRow


_TOKEN_COLUMNS = ("input_tokens", "audio_tokens", "text_tokens", "output_tokens", "total_tokens")


def usage_report(
    store: Store,
    *,
    by: GroupBy = GroupBy.MODEL,
    since: datetime | None = None,
    until: datetime | None = None,
) -> UsageReport:
    """Audio minutes, tokens, estimated cost and job counts of jobs stored in ``[since, until)``.

    Only final jobs count: usage is known once the result is stored. Audio minutes are
    the audio's own length where the provider reported it, else the billed seconds.
    """
    key = JobRow.model if by is GroupBy.MODEL else _utc_day(store)
    query = (
        select(
            key.label("grp"),
            func.count(),
            func.sum(_is_completed()),
            func.sum(func.coalesce(JobRow.audio_seconds, JobRow.billed_seconds)),
            *(func.sum(getattr(JobRow, name)) for name in _TOKEN_COLUMNS),
            func.sum(JobRow.cost_usd),
            func.sum(_is_unpriced()),
        )
        .where(JobRow.stored_at.is_not(None))
        .group_by(key)
    )
    if since is not None:
        query = query.where(JobRow.stored_at >= since)
    if until is not None:
        query = query.where(JobRow.stored_at < until)
    with store.session() as session:
        rows = [_usage_row(*values) for values in session.execute(query)]
    # Sorted here, not by ORDER BY: PostgreSQL collations may ignore punctuation ("#g1_...").
    rows.sort(key=lambda row: row.group)
    return UsageReport(by=by, since=since, until=until, rows=tuple(rows), total=_add_up(rows))


def _utc_day(store: Store) -> ColumnElement[str]:
    """The UTC date of ``stored_at`` as ``YYYY-MM-DD``, whatever the session's time zone.

    SQLite keeps the UTC wall time as text, so its ``date()`` is already right;
    PostgreSQL's ``timestamptz`` would be cut at the session zone's midnight, hence the
    explicit ``AT TIME ZONE 'UTC'``. Constants are literal so that the SELECT and the
    GROUP BY render the very same expression (bound parameters would differ).
    """
    if store.engine.dialect.name == "postgresql":
        expression: Any = func.to_char(
            func.timezone(literal_column("'UTC'"), JobRow.stored_at),
            literal_column("'YYYY-MM-DD'"),
        )
    else:
        expression = func.date(JobRow.stored_at)
    return type_coerce(expression, String)


def _is_unpriced() -> ColumnElement[int]:
    return case(
        ((JobRow.status == JobStatus.COMPLETED.value) & JobRow.cost_usd.is_(None), 1), else_=0
    )


def _usage_row(group: Any, jobs: Any, completed: Any, seconds: Any, *rest: Any) -> UsageRow:
    """One aggregate row as typed totals.

    SUM of no tokens is NULL, which is 0 tokens; but SUM of no seconds or no costs is
    "unknown" and stays ``None``: 0.00 minutes or $0 would be a claim nobody made.
    """
    *token_sums, cost, unpriced = rest
    tokens = dict(zip(_TOKEN_COLUMNS, (int(t or 0) for t in token_sums), strict=True))
    return UsageRow(
        group=str(group),
        jobs=int(jobs),
        completed=int(completed or 0),
        audio_minutes=None if seconds is None else float(seconds) / 60.0,
        cost_usd=None if cost is None else float(cost),
        unpriced=int(unpriced or 0),
        **tokens,
    )


def _known_sum(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return math.fsum(known) if known else None


def _add_up(rows: Sequence[UsageRow]) -> UsageRow:
    return UsageRow(
        group="total",
        jobs=sum(r.jobs for r in rows),
        completed=sum(r.completed for r in rows),
        audio_minutes=_known_sum([r.audio_minutes for r in rows]),
        input_tokens=sum(r.input_tokens for r in rows),
        audio_tokens=sum(r.audio_tokens for r in rows),
        text_tokens=sum(r.text_tokens for r in rows),
        output_tokens=sum(r.output_tokens for r in rows),
        total_tokens=sum(r.total_tokens for r in rows),
        cost_usd=_known_sum([r.cost_usd for r in rows]),
        unpriced=sum(r.unpriced for r in rows),
    )
