"""The table behind the store. One row per job, keyed on our own job id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "JobRow", "SpeedRow"]


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite forgets the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class JobRow(Base):
    __tablename__ = "stt_jobs"
    # An idempotency key is unique within its scope (the caller's tenant), not globally:
    # two tenants may pick the same key and get two jobs.
    __table_args__ = (
        UniqueConstraint("idempotency_scope", "idempotency_key", name="uq_stt_jobs_idempotency"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    model: Mapped[str] = mapped_column(String(100), index=True)
    url: Mapped[str] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(35))
    prompt: Mapped[str | None] = mapped_column(Text)
    temperature: Mapped[float | None] = mapped_column(Float)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # The tenant the key belongs to; '' for none (NOT NULL: a NULL would make every
    # unscoped key unique, since NULLs never collide in a unique constraint).
    idempotency_scope: Mapped[str] = mapped_column(String(200), default="", server_default="")
    # SHA-256 of the request's parameters (tasks.validation.JobRequest.fingerprint): a key
    # sent again with other parameters is refused, never answered with this job.
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    callback_url: Mapped[str | None] = mapped_column(Text)

    # Text, not VARCHAR(n): any id the API hands out must be recordable (an id that is not
    # recorded is a job created again by the next submit). The status word is kept cut to
    # tasks.store.MAX_SERVER_STATUS_CHARS; its meaning never depends on the cut.
    generation_id: Mapped[str | None] = mapped_column(Text, index=True)
    server_status: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    words: Mapped[list[Any] | None] = mapped_column(JSON)
    segments: Mapped[list[Any] | None] = mapped_column(JSON)
    raw_result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)

    input_tokens: Mapped[int | None] = mapped_column(Integer)
    audio_tokens: Mapped[int | None] = mapped_column(Integer)
    text_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    total_tokens: Mapped[int | None] = mapped_column(Integer)
    billed_seconds: Mapped[float | None] = mapped_column(Float)
    audio_seconds: Mapped[float | None] = mapped_column(Float)
    cost_usd: Mapped[float | None] = mapped_column(Float)

    polls: Mapped[int] = mapped_column(Integer, default=0)
    submit_attempts: Mapped[int] = mapped_column(Integer, default=0)

    enqueued_at: Mapped[datetime] = mapped_column(index=True)
    submitted_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Indexed for pruning by age (tasks/retention.py) and usage --since/--until.
    stored_at: Mapped[datetime | None] = mapped_column(index=True)
    # When the job's current step is next due: its lease. Every re-schedule of every step
    # writes it; the sweeper re-drives only a job whose step is overdue (tasks/sweep.py).
    due_at: Mapped[datetime | None] = mapped_column(index=True)
    # The fence: which step chain owns the job. A claim or a re-drive moves it on with a
    # compare-and-set, so a late or duplicate chain finds itself stale and stops.
    chain: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # How often the sweeper re-drove the job: its backoff (tasks/lease.py).
    redrives: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    # Duration-aware polling (docs/polling.md). The audio's length in seconds and where it
    # came from: "given" by the caller, "probed" from the file's first bytes before the
    # submit, or "api" (the result's own figure, for a job that had neither). NULL: unknown.
    duration: Mapped[float | None] = mapped_column(Float)
    duration_source: Mapped[str | None] = mapped_column(String(8))
    # When the API last said "not finished" (the create, or the last pending poll): the
    # server finished between it and ``finished_at``, what tasks/speed.py learns from.
    pending_at: Mapped[datetime | None]

    # Completion callback delivery (tasks/callbacks.py): NULL until the job ends, then
    # pending -> delivered | failed.
    callback_status: Mapped[str | None] = mapped_column(String(16))
    callback_attempts: Mapped[int | None] = mapped_column(Integer, default=0)
    callback_error: Mapped[str | None] = mapped_column(Text)
    callback_delivered_at: Mapped[datetime | None]
    # When the next delivery attempt is due: what the sweeper watches for a lost message.
    callback_next_at: Mapped[datetime | None]


class SpeedRow(Base):
    """How fast the server transcribes with one model (``tasks.speed.SpeedModel``), as
    last fitted from finished jobs by ``stt.fit_speed`` (tasks/learn.py). A model
    without a row has no forecast: its jobs keep today's schedule."""

    __tablename__ = "stt_speed_models"

    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    queue: Mapped[float] = mapped_column(Float)
    rate: Mapped[float] = mapped_column(Float)
    sigma: Mapped[float] = mapped_column(Float)
    queue_spread: Mapped[float] = mapped_column(Float)
    jobs: Mapped[int] = mapped_column(Integer)  # how many finished jobs the fit used
    fitted_at: Mapped[datetime]
