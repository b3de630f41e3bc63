"""Idempotency keys scoped by tenant, with a fingerprint of the request (issue 12 case 7).

- ``idempotency_scope`` (NOT NULL DEFAULT ''): the tenant a key belongs to; existing
  keys fall in the unscoped '' scope, where they stay unique as before.
- ``request_fingerprint``: SHA-256 of the request's parameters; NULL on existing rows,
  whose fingerprint is computed from their columns when a key is reused.
- The unique constraint moves from ``idempotency_key`` to (scope, key).

Revision ID: 0003_idempotency_scope
Revises: 0001_initial
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_idempotency_scope"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW = "uq_stt_jobs_idempotency"
# What SQLite's reflection calls v0.1.0's unnamed UNIQUE (idempotency_key) under this
# naming convention, so that batch mode can drop it; PostgreSQL named it itself.
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
_SQLITE_OLD = "uq_stt_jobs_idempotency_key"
_POSTGRES_OLD = "stt_jobs_idempotency_key_key"


def _old_constraint() -> str:
    """The name of the unique constraint on ``idempotency_key`` alone."""
    if op.get_context().dialect.name == "sqlite":
        return _SQLITE_OLD
    if op.get_context().as_sql:  # --sql: nothing to inspect; the name PostgreSQL gives
        return _POSTGRES_OLD
    for found in sa.inspect(op.get_bind()).get_unique_constraints("stt_jobs"):
        if found["column_names"] == ["idempotency_key"] and found["name"]:
            return str(found["name"])
    return _POSTGRES_OLD


def upgrade() -> None:
    old = _old_constraint()
    with op.batch_alter_table("stt_jobs", naming_convention=_NAMING) as batch:
        batch.add_column(
            sa.Column("idempotency_scope", sa.String(200), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("request_fingerprint", sa.String(64)))
        batch.drop_constraint(old, type_="unique")
        batch.create_unique_constraint(NEW, ["idempotency_scope", "idempotency_key"])


def downgrade() -> None:
    with op.batch_alter_table("stt_jobs", naming_convention=_NAMING) as batch:
        batch.drop_constraint(NEW, type_="unique")
        batch.create_unique_constraint(_SQLITE_OLD, ["idempotency_key"])
        batch.drop_column("request_fingerprint")
        batch.drop_column("idempotency_scope")
