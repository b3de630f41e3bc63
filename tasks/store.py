"""The job store: the source of truth for every job's state (SQLAlchemy 2).

The broker only delivers work and may lose it; each step writes what it learned here
first, so a job can always be re-driven from its row. Writes are keyed on the job id and
guarded by the row's status, which makes every step safe to run twice.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict, Unpack

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    RowMapping,
    Update,
    bindparam,
    case,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.expression import Executable

from tasks.migrate import ensure_current
from tasks.models import FINAL_JOB_STATUSES, JobStatus, Transcript
from tasks.schema import JobRow
from tasks.validation import JobRequest, fingerprint_of

__all__ = [
    "IDS_PER_QUERY",
    "MAX_SERVER_STATUS_CHARS",
    "JobRecord",
    "Store",
    "sqlite_file",
    "status_for_row",
]

# Ids in one ``IN (...)``: below every database's bind-parameter limit (SQLite's was 999
# before 3.32), and large enough that 100,000 ids take ~110 queries.
IDS_PER_QUERY = 900

# The server's status word as the row keeps it: control characters stripped, then cut to
# this many characters. Only for people and the log: the pipeline acts on the whole word
# (an unknown word of any length is pending until the deadline, see tasks.models).
MAX_SERVER_STATUS_CHARS = 64


def status_for_row(word: str | None) -> str | None:
    """``word`` as the ``server_status`` column keeps it (see MAX_SERVER_STATUS_CHARS)."""
    if word is None:
        return None
    printable = "".join(c for c in word if unicodedata.category(c)[0] != "C")
    return printable[:MAX_SERVER_STATUS_CHARS]


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A read-only snapshot of one job's row."""

    id: str
    status: JobStatus
    model: str
    url: str
    language: str | None
    prompt: str | None
    temperature: float | None
    metadata: dict[str, Any]
    idempotency_key: str | None
    callback_url: str | None
    generation_id: str | None
    server_status: str | None
    text: str | None
    words: list[dict[str, Any]] | None
    segments: list[dict[str, Any]] | None
    raw_result: dict[str, Any] | None
    error: str | None
    input_tokens: int | None
    audio_tokens: int | None
    text_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    billed_seconds: float | None
    audio_seconds: float | None
    cost_usd: float | None
    polls: int
    submit_attempts: int
    enqueued_at: datetime
    submitted_at: datetime | None
    finished_at: datetime | None
    stored_at: datetime | None
    due_at: datetime | None
    callback_status: str | None = None
    callback_attempts: int | None = 0
    callback_error: str | None = None
    callback_delivered_at: datetime | None = None
    callback_next_at: datetime | None = None
    idempotency_scope: str = ""
    request_fingerprint: str | None = None
    chain: int = 0
    redrives: int = 0
    duration: float | None = None
    duration_source: str | None = None
    pending_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status in FINAL_JOB_STATUSES

    @property
    def fingerprint(self) -> str:
        """The request's fingerprint: stored, or computed from the columns (older rows)."""
        return self.request_fingerprint or fingerprint_of(self)

    @classmethod
    def from_row(cls, row: JobRow) -> JobRecord:
        values = {name: getattr(row, name) for name in cls.__slots__ if name != "metadata"}
        values["status"] = JobStatus(row.status)
        return cls(metadata=dict(row.metadata_ or {}), **values)

    @classmethod
    def from_columns(cls, row: RowMapping) -> JobRecord:
        """From a Core result row: the fields are named after the table's columns."""
        values = {name: row[name] for name in cls.__slots__ if name != "metadata"}
        values["status"] = JobStatus(row["status"])
        return cls(metadata=dict(row["metadata"] or {}), **values)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    """Create, advance and read jobs. One instance per process; thread-safe."""

    def __init__(self, url: str, *, pre_ping: bool = True, create: bool | None = None) -> None:
        """Open the store; raise ``SchemaOutOfDate`` if its schema is behind this code.

        ``create``: make the schema in an empty database (default: only on SQLite; a
        PostgreSQL schema is made by ``stt-workers migrate``, see tasks/migrate.py).
        """
        self.url = url
        self.engine = _make_engine(url, pre_ping=pre_ping)
        # Its own pool, every connection in autocommit mode for good (see _single):
        # switching a pooled connection in and out of it cost more CPU than it saved.
        # An in-memory SQLite database exists once per pool, so it keeps the one engine.
        self._autocommit = (
            self.engine
            if _in_memory(url)
            else _make_engine(url, pre_ping=pre_ping, autocommit=True)
        )
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        ensure_current(self.engine, create=create)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def _single(self) -> Iterator[Connection]:
        """A connection for exactly one statement, run in the database's autocommit mode.

        One statement is atomic and durable on its own, so wrapping it in BEGIN ... COMMIT
        guarantees nothing more; on PostgreSQL it cost two extra round trips (and the
        driver's CPU for them) per statement, 12 of the 18 a job made (docs/benchmarks.md).
        Anything that needs two statements to agree uses ``session()`` instead.
        """
        # begin(), not connect(): in autocommit mode its COMMIT is a no-op, and without
        # autocommit (in-memory SQLite) it is the one transaction the statement needs.
        with self._autocommit.begin() as conn:
            yield conn

    def _write(self, statement: Executable) -> int:
        """Run one UPDATE on its own; the number of rows it changed.

        On a Core connection, not an ORM session: a session's bulk-update path (identity
        map, ``synchronize_session``) cost ~1 ms of CPU per write for nothing these
        single-statement writes need (docs/benchmarks.md).
        """
        with self._single() as conn:
            return int(conn.execute(statement).rowcount)

    def close(self) -> None:
        if self._autocommit is not self.engine:
            self._autocommit.dispose()
        self.engine.dispose()

    # -- writes ----------------------------------------------------------------------------

    def create_job(
        self, request: JobRequest, *, now: datetime | None = None
    ) -> tuple[JobRecord, bool]:
        """Insert a pending job; with an idempotency key already known in the request's
        tenant, return that job instead (the caller compares the fingerprints).

        Returns the record and whether it was created by this call.
        """
        scope = request.tenant or ""
        if request.idempotency_key is not None:
            existing = self.find_by_idempotency_key(request.idempotency_key, scope=scope)
            if existing is not None:
                return existing, False
        row = JobRow(
            id=uuid.uuid4().hex,
            status=JobStatus.PENDING.value,
            model=request.model,
            url=request.url,
            language=request.language,
            prompt=request.prompt,
            temperature=request.temperature,
            metadata_=request.metadata,
            idempotency_key=request.idempotency_key,
            idempotency_scope=scope,
            request_fingerprint=request.fingerprint,
            callback_url=request.callback_url,
            duration=request.duration,
            duration_source=None if request.duration is None else "given",
            enqueued_at=now or utcnow(),
            chain=0,
            redrives=0,
        )
        # Its submit is due at once: a message that never reaches a worker is overdue
        # from here (tasks/sweep.py).
        row.due_at = row.enqueued_at
        try:
            with self.session() as session:
                session.add(row)
        except Exception:
            # A concurrent call with the same idempotency key won the unique index.
            if request.idempotency_key is not None:
                existing = self.find_by_idempotency_key(request.idempotency_key, scope=scope)
                if existing is not None:
                    return existing, False
            raise
        return JobRecord.from_row(row), True

    def fail_unenqueued(self, job_id: str, *, error: str, now: datetime | None = None) -> None:
        """End a job that never reached the broker, and give its idempotency key back.

        As Stripe keeps no result for a request that did not start: a retry with the same
        key once the broker is back must enqueue the job, not find this one spent.
        """
        statement = _finish_statement(job_id, JobStatus.FAILED, error=error, now=now)
        self._write(statement.values(idempotency_key=None))

    def mark_submitted(
        self,
        job_id: str,
        generation_id: str,
        *,
        now: datetime | None = None,
        chain: int | None = None,
        due_at: datetime | None = None,
    ) -> bool:
        """Record the generation id the moment the API hands it out (never overwrite one).

        With ``chain``, only while that chain owns the job; ``due_at``: the first poll's
        lease. Returns whether the row changed.
        """
        now = now or utcnow()
        statement = update(JobRow).where(JobRow.id == job_id, JobRow.generation_id.is_(None))
        if chain is not None:
            statement = statement.where(JobRow.chain == chain)
        return bool(
            self._write(
                statement.values(
                    generation_id=generation_id,
                    status=JobStatus.SUBMITTED.value,
                    submitted_at=now,
                    submit_attempts=JobRow.submit_attempts + 1,
                    due_at=due_at,
                )
            )
        )

    def note_duration(self, job_id: str, duration: float, *, chain: int, due_at: datetime) -> bool:
        """Record the audio's duration the submit probed, and the first poll's lease,
        while ``chain`` owns the job (False: it does not)."""
        return bool(
            self._write(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.chain == chain, JobRow.status.not_in(_FINAL))
                .values(duration=duration, duration_source="probed", due_at=due_at)
            )
        )

    def claim(self, job_id: str, *, chain: int, status: JobStatus, due_at: datetime) -> bool:
        """Compare-and-set the fence: ``chain -> chain + 1`` with a lease until ``due_at``,
        only if the job is still in ``status`` and ``chain`` still owns it.

        A submit claims before ``POST /create``, so two submits of one job cannot both
        create it; False means another chain owns the job (or it ended): stop.
        """
        return bool(
            self._write(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.chain == chain, JobRow.status == status.value)
                .values(chain=chain + 1, due_at=due_at)
            )
        )

    def redrive(self, job_id: str, *, chain: int, due_at: datetime) -> bool:
        """The sweeper's claim: like ``claim``, and counts the re-drive (its backoff)."""
        return bool(
            self._write(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.chain == chain, JobRow.status.not_in(_FINAL))
                .values(chain=chain + 1, redrives=JobRow.redrives + 1, due_at=due_at)
            )
        )

    def count_submit_attempt(self, job_id: str) -> None:
        self._write(
            update(JobRow)
            .where(JobRow.id == job_id)
            .values(submit_attempts=JobRow.submit_attempts + 1)
        )

    def record_poll(
        self,
        job_id: str,
        *,
        server_status: str | None,
        polls: int,
        due_at: datetime | None,
        chain: int | None = None,
    ) -> bool:
        """Note a poll and when the next one is due (what the sweeper watches).

        ``polls`` never goes down: a late duplicate poll chain must not rewind the count.
        With ``chain``, only while that chain owns the job; False means it does not (or
        the job ended): the poll chain stops.
        """
        statement = _RECORD_POLL if chain is None else _RECORD_POLL_FENCED
        params = {
            "p_job": job_id,
            "p_status": status_for_row(server_status),
            "p_polls": polls,
            "p_due": due_at,
            "p_chain": chain,
        }
        with self._single() as conn:
            return bool(conn.execute(statement, params).rowcount)

    def defer(
        self,
        job_id: str,
        *,
        until: datetime,
        chain: int | None = None,
        count_attempt: bool = False,
    ) -> bool:
        """Note that the job's next step comes back at ``until`` (a shared limit's wait, a
        submit retry's backoff), so the sweeper does not take a job that waits its turn
        for one whose message was lost. With ``chain``, only while that chain owns the
        job; ``count_attempt`` also counts a failed submit attempt.
        """
        values: dict[str, Any] = {"due_at": until}
        if count_attempt:
            values["submit_attempts"] = JobRow.submit_attempts + 1
        statement = update(JobRow).where(JobRow.id == job_id, JobRow.status.not_in(_FINAL))
        if chain is not None:
            statement = statement.where(JobRow.chain == chain)
        return bool(self._write(statement.values(**values)))

    def land_result(
        self,
        job_id: str,
        *,
        server_status: str,
        raw_result: dict[str, Any] | None,
        error: str | None,
        polls: int,
        finished_at: datetime,
        pending_at: float | None = None,
    ) -> None:
        """Keep the server's final answer the moment a poll sees it.

        ``pending_at`` (epoch seconds): when the API last said "not finished"; with
        ``finished_at`` it bounds the server's time, what tasks/learn.py fits on.

        The store step then reads it from here, so the (possibly large) result never rides
        through the broker, and a lost store message can be re-driven from the row.
        The first sighting wins: a redelivered poll does not move ``finished_at``.
        """
        self._write(
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.finished_at.is_(None))
            .values(
                server_status=status_for_row(server_status),
                raw_result=raw_result,
                error=error,
                polls=polls,
                finished_at=finished_at,
                pending_at=None if pending_at is None else datetime.fromtimestamp(pending_at, UTC),
                # The store step is due now: a lost one is re-driven from here.
                due_at=finished_at,
            )
        )

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        **fields: Unpack[FinishFields],
    ) -> bool:
        """Write a job's final state once; a second call changes nothing and returns False."""
        return bool(self._write(_finish_statement(job_id, status, **fields)))

    def finish_and_get(
        self,
        job_id: str,
        status: JobStatus,
        **fields: Unpack[FinishFields],
    ) -> JobRecord | None:
        """``finish``, then the job's row as it stands: the one just written, or, when the
        job had already ended (a redelivered store), the one stored before; None if no
        such job.

        The written row comes back from the UPDATE itself (``RETURNING``: PostgreSQL,
        SQLite >= 3.35), saving the store step a SELECT per job; only a finish that
        changed nothing reads the row again.
        """
        statement = _finish_statement(job_id, status, **fields)
        if not self.engine.dialect.update_returning:
            self._write(statement)
            return self.get(job_id)
        with self._single() as conn:
            row = conn.execute(statement.returning(*JobRow.__table__.columns)).mappings().first()
        return JobRecord.from_columns(row) if row is not None else self.get(job_id)

    # -- reads -----------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        # Core, not session.get(): the ORM's identity map and instance state cost CPU on
        # every step of every job for a snapshot that is copied into a JobRecord at once.
        query = select(JobRow.__table__).where(JobRow.__table__.c.id == job_id)
        with self._single() as conn:
            row = conn.execute(query).mappings().first()
        return JobRecord.from_columns(row) if row is not None else None

    def find_by_idempotency_key(self, key: str, *, scope: str = "") -> JobRecord | None:
        """The job ``key`` names in ``scope`` (a tenant; '' for none), if any."""
        query = select(JobRow).where(
            JobRow.idempotency_scope == scope, JobRow.idempotency_key == key
        )
        with self.session() as session:
            row = session.scalars(query).first()
            return JobRecord.from_row(row) if row else None

    def list_jobs(
        self, *, status: JobStatus | None = None, limit: int | None = 50
    ) -> list[JobRecord]:
        """Newest first."""
        query = select(JobRow).order_by(JobRow.enqueued_at.desc(), JobRow.id)
        if status is not None:
            query = query.where(JobRow.status == status.value)
        if limit is not None:
            query = query.limit(limit)
        with self.session() as session:
            return [JobRecord.from_row(row) for row in session.scalars(query)]

    def get_many(self, job_ids: Sequence[str]) -> list[JobRecord]:
        """The jobs among ``job_ids`` that exist, in no particular order.

        Read ``IDS_PER_QUERY`` at a time: one ``IN`` of 100,000 ids passes PostgreSQL's
        65,535 bind parameters (and SQLite's 32,766 on standard builds).
        """
        ids = list(dict.fromkeys(job_ids))
        table = JobRow.__table__
        records: list[JobRecord] = []
        with self._single() as conn:
            for start in range(0, len(ids), IDS_PER_QUERY):
                query = select(table).where(table.c.id.in_(ids[start : start + IDS_PER_QUERY]))
                records += [JobRecord.from_columns(row) for row in conn.execute(query).mappings()]
        return records

    def count_by_status(self) -> dict[str, int]:
        with self.session() as session:
            rows = session.execute(select(JobRow.status, func.count()).group_by(JobRow.status))
            return {row[0]: row[1] for row in rows}


_FINAL = [s.value for s in FINAL_JOB_STATUSES]


def _record_poll_statement(*, fenced: bool) -> Update:
    """``record_poll``'s UPDATE, built once with bound parameters. A poll renewing its
    lease writes the row every other poll at the default schedule (10 s polls, 20 s of
    lease extra), and building the statement anew for each write cost as much CPU again
    as running it: 0.63 vs 0.31 ms a write on PostgreSQL, measured in-process."""
    polls = bindparam("p_polls", type_=Integer)
    statement = update(JobRow).where(JobRow.id == bindparam("p_job"), JobRow.status.not_in(_FINAL))
    if fenced:
        statement = statement.where(JobRow.chain == bindparam("p_chain", type_=Integer))
    return statement.values(
        server_status=bindparam("p_status", type_=JobRow.server_status.type),
        polls=case((JobRow.polls < polls, polls), else_=JobRow.polls),
        due_at=bindparam("p_due", type_=JobRow.due_at.type),
    )


_RECORD_POLL = _record_poll_statement(fenced=False)
_RECORD_POLL_FENCED = _record_poll_statement(fenced=True)


class FinishFields(TypedDict, total=False):
    """What a job's end may write beside its status (``Store.finish``); all optional."""

    transcript: Transcript | None
    raw_result: dict[str, Any] | None
    error: str | None
    server_status: str | None
    cost_usd: float | None
    polls: int | None
    finished_at: datetime | None
    now: datetime | None
    duration: float | None  # the audio's length the API reported, for a job without one


def _finish_statement(job_id: str, status: JobStatus, **fields: Unpack[FinishFields]) -> Update:
    """The UPDATE that ends a job, guarded so that only the first one changes the row."""
    values: dict[str, Any] = {
        "status": status.value,
        "error": fields.get("error"),
        "stored_at": fields.get("now") or utcnow(),
        "due_at": None,
        "cost_usd": fields.get("cost_usd"),
    }
    # Columns a first sighting may already hold (``land_result``): only overwrite with a value.
    for column in ("raw_result", "finished_at", "server_status", "polls"):
        if fields.get(column) is not None:
            values[column] = fields[column]
    if fields.get("duration") is not None:
        values.update(duration=fields["duration"], duration_source="api")
    if "server_status" in values:
        values["server_status"] = status_for_row(values["server_status"])
    transcript = fields.get("transcript")
    if transcript is not None:
        values.update(
            text=transcript.text,
            words=[_plain(w) for w in transcript.words] or None,
            segments=[_plain(s) for s in transcript.segments] or None,
            # Usage's fields are named after their columns.
            **asdict(transcript.usage),
        )
    return update(JobRow).where(JobRow.id == job_id, JobRow.status.not_in(_FINAL)).values(**values)


def _plain(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__ if getattr(obj, name) is not None}


def sqlite_file(url: str) -> Path | None:
    """The absolute path of a file-backed SQLite database's file; ``None`` for anything else.

    Opening such a URL creates the file, so a caller that must only read checks first.
    """
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or _in_memory(url) or not database:
        return None
    if database.startswith("file:"):  # a URI filename: file:path?mode=ro
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database).resolve()


def _in_memory(url: str) -> bool:
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def _make_engine(url: str, *, pre_ping: bool, autocommit: bool = False) -> Engine:
    parsed = make_url(url)
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    # A database error's text must not carry the statement's parameters: they are the
    # request's (a presigned URL's signature, a prompt) and the text reaches logs and callers.
    options["hide_parameters"] = True
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **options
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the web app read while a worker writes; NORMAL is safe under WAL.
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    # Workers run without pool_pre_ping: it cost one extra round trip per transaction, ~7
    # per job (profile in docs/benchmarks.md). A connection that died with the server fails
    # its first statement instead; SQLAlchemy then invalidates the whole pool, and the
    # task's DBAPIError retry (tasks.pipeline) runs the idempotent step again. A web app
    # has no such retry, so its store keeps the ping: transcribe() after a database
    # restart must not fail once per pooled connection.
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=pre_ping, **options)
