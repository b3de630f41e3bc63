"""Duration-aware polling (issue 15): the audio's length, the last pending sighting, and
the per-model speed the poll schedule is forecast from.

- ``duration`` and ``duration_source`` ("given", "probed" or "api"): NULL on existing
  rows, whose duration is unknown (their ``audio_seconds`` still teaches the fit).
- ``pending_at``: when the API last said "not finished"; NULL on existing rows, which
  the fit then bounds from ``submitted_at``.
- ``stt_speed_models``: one small row per model, rewritten by ``stt.fit_speed``.

Only nullable columns and a new table: no row is rewritten, no lock held for long.

Revision ID: 0005_duration
Revises: 0004_retention
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_duration"
down_revision: str | Sequence[str] | None = "0004_retention"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SPEED = "stt_speed_models"


def upgrade() -> None:
    with op.batch_alter_table("stt_jobs") as batch:
        batch.add_column(sa.Column("duration", sa.Float()))
        batch.add_column(sa.Column("duration_source", sa.String(8)))
        batch.add_column(sa.Column("pending_at", sa.DateTime(timezone=True)))
    op.create_table(
        SPEED,
        sa.Column("model", sa.String(100), primary_key=True),
        sa.Column("queue", sa.Float(), nullable=False),
        sa.Column("rate", sa.Float(), nullable=False),
        sa.Column("sigma", sa.Float(), nullable=False),
        sa.Column("queue_spread", sa.Float(), nullable=False),
        sa.Column("jobs", sa.Integer(), nullable=False),
        sa.Column("fitted_at", sa.DateTime(timezone=True), nullable=False),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_table(SPEED, if_exists=True)
    with op.batch_alter_table("stt_jobs") as batch:
        batch.drop_column("pending_at")
        batch.drop_column("duration_source")
        batch.drop_column("duration")
