"""Index ``stored_at``: pruning finished jobs by age (tasks/retention.py).

``stt-workers prune`` and the scheduled ``stt.prune`` pick finished jobs whose
``stored_at`` is older than the retention window, oldest first, 1,000 at a time; without
an index every batch would scan the table. ``usage --since/--until`` filter on it too.

A plain ``CREATE INDEX`` (inside the migration's one transaction, under its lock): on
PostgreSQL writes wait while it builds, about a second per million rows. A DBA who must
not pause writes creates it first with ``CREATE INDEX CONCURRENTLY IF NOT EXISTS
ix_stt_jobs_stored_at ON stt_jobs (stored_at)``; this revision then finds it there
(docs/operations.md, "Retention").

Revision ID: 0004_retention
Revises: 0003_idempotency_scope
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004_retention"
down_revision: str | Sequence[str] | None = "0003_idempotency_scope"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_stt_jobs_stored_at"


def upgrade() -> None:
    op.create_index(INDEX, "stt_jobs", ["stored_at"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="stt_jobs", if_exists=True)
