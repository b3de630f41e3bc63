"""Fence and lease columns; ids and status words of any length (issue 12 cases 3-5).

- ``generation_id`` and ``server_status`` become TEXT: an id longer than VARCHAR(100)
  could not be recorded, and every sweep then created the job again at the API.
- ``next_poll_at`` becomes ``due_at``: when the job's current step (submit, poll or store)
  is next due, written by every re-schedule; its index is renamed with it.
- ``chain`` (the fence: which step chain owns the job) and ``redrives`` (the sweeper's
  backoff), both NOT NULL DEFAULT 0, so existing rows read as "never claimed".

Rows are kept as they are: a rename and type widenings lose nothing.

Revision ID: 0002_core
Revises: 0001_initial
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_core"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode: SQLite changes a column's type by copying the table (rows included);
    # PostgreSQL gets plain ALTERs.
    with op.batch_alter_table("stt_jobs") as batch:
        batch.drop_index("ix_stt_jobs_next_poll_at")
        batch.alter_column("next_poll_at", new_column_name="due_at")
        batch.alter_column(
            "generation_id", type_=sa.Text(), existing_type=sa.String(100), existing_nullable=True
        )
        batch.alter_column(
            "server_status", type_=sa.Text(), existing_type=sa.String(32), existing_nullable=True
        )
        batch.add_column(sa.Column("chain", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("redrives", sa.Integer(), nullable=False, server_default="0"))
    # Outside the batch: inside it, an index cannot name a column the batch renamed.
    op.create_index("ix_stt_jobs_due_at", "stt_jobs", ["due_at"])


def downgrade() -> None:
    op.drop_index("ix_stt_jobs_due_at", "stt_jobs")
    with op.batch_alter_table("stt_jobs") as batch:
        batch.drop_column("redrives")
        batch.drop_column("chain")
        batch.alter_column(
            "server_status", type_=sa.String(32), existing_type=sa.Text(), existing_nullable=True
        )
        batch.alter_column(
            "generation_id", type_=sa.String(100), existing_type=sa.Text(), existing_nullable=True
        )
        batch.alter_column("due_at", new_column_name="next_poll_at")
    op.create_index("ix_stt_jobs_next_poll_at", "stt_jobs", ["next_poll_at"])
