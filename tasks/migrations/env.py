"""Alembic's environment: run by ``tasks.migrate`` (never by an alembic.ini of ours).

Online, every run takes the migration lock first (a PostgreSQL advisory lock held until
the transaction ends), so N ``stt-workers migrate`` started together upgrade once and the
others find the schema current. A database v0.1.0 made (the table, no version) is
recognised and stamped ``0001_initial`` under the same lock, before the upgrade.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from tasks.migrate import UNVERSIONED, adopt_v0_1_0, include_name, migration_lock
from tasks.schema import Base

config = context.config
target_metadata = Base.metadata
_OPTIONS: dict[str, Any] = {
    "target_metadata": target_metadata,
    "include_name": include_name,
    "compare_type": True,
    # SQLite alters a table by copying it: autogenerate writes batch operations for that.
    "render_as_batch": True,
}


def run_offline() -> None:
    """``stt-workers migrate --sql``: SQL text for the URL's dialect, nothing executed."""
    context.configure(
        url=config.attributes["url"],
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_OPTIONS,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **_OPTIONS)
    with context.begin_transaction():
        migration_lock(connection)
        # What this run found, for the caller to report: read under the lock, so of N
        # concurrent runs exactly one finds the database behind.
        found = context.get_context().get_current_revision()
        if adopt_v0_1_0(connection, context.get_context(), context.script):
            found = UNVERSIONED
        config.attributes["found"] = found
        context.run_migrations()


def run_online() -> None:
    shared: Connection | None = config.attributes.get("connection")
    if shared is not None:
        _run(shared)
        return
    engine = create_engine(config.attributes["url"], poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
