"""The job table as v0.1.0 creates it (``create_all`` of tasks/schema.py at that release).

Frozen: later revisions change the schema, never this file. ``tasks.migrate`` also reads
``stt_jobs()`` from here to recognise a database v0.1.0 made (no ``alembic_version``)
before stamping it with this revision.

Revision ID: 0001_initial
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Columns with index=True, as create_all names their indexes (ix_<table>_<column>).
INDEXED = ("status", "model", "generation_id", "enqueued_at", "next_poll_at")


def stt_jobs(metadata: sa.MetaData) -> sa.Table:
    """v0.1.0's ``stt_jobs`` table, on ``metadata``."""
    indexes = [sa.Index(f"ix_stt_jobs_{name}", name) for name in INDEXED]
    return sa.Table("stt_jobs", metadata, *_columns(), *indexes)


def _columns() -> list[Any]:
    """Fresh objects on each call: a Column belongs to one table only."""

    def when(name: str, nullable: bool = True) -> sa.Column[object]:
        return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)

    return [
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("language", sa.String(35)),
        sa.Column("prompt", sa.Text()),
        sa.Column("temperature", sa.Float()),
        sa.Column("metadata", sa.JSON()),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("callback_url", sa.Text()),
        sa.Column("generation_id", sa.String(100)),
        sa.Column("server_status", sa.String(32)),
        sa.Column("text", sa.Text()),
        sa.Column("words", sa.JSON()),
        sa.Column("segments", sa.JSON()),
        sa.Column("raw_result", sa.JSON()),
        sa.Column("error", sa.Text()),
        sa.Column("input_tokens", sa.Integer()),
        sa.Column("audio_tokens", sa.Integer()),
        sa.Column("text_tokens", sa.Integer()),
        sa.Column("output_tokens", sa.Integer()),
        sa.Column("total_tokens", sa.Integer()),
        sa.Column("billed_seconds", sa.Float()),
        sa.Column("audio_seconds", sa.Float()),
        sa.Column("cost_usd", sa.Float()),
        sa.Column("polls", sa.Integer(), nullable=False),
        sa.Column("submit_attempts", sa.Integer(), nullable=False),
        when("enqueued_at", nullable=False),
        when("submitted_at"),
        when("finished_at"),
        when("stored_at"),
        when("next_poll_at"),
        sa.Column("callback_status", sa.String(16)),
        sa.Column("callback_attempts", sa.Integer()),
        sa.Column("callback_error", sa.Text()),
        when("callback_delivered_at"),
        when("callback_next_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    ]


def upgrade() -> None:
    op.create_table("stt_jobs", *_columns())
    for name in INDEXED:
        op.create_index(f"ix_stt_jobs_{name}", "stt_jobs", [name])


def downgrade() -> None:
    op.drop_table("stt_jobs")
