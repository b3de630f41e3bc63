"""Schema migrations: bring a database to this release's schema, or refuse to run on it.

Alembic owns the schema; its scripts live in ``tasks/migrations`` (inside the package, so
a wheel carries them) and are configured here, with no alembic.ini. ``stt-workers
migrate`` upgrades; every process that opens the store only *checks* (one SELECT of
``alembic_version``) and stops with one line naming the command when the schema is behind
its code, so N workers never race on DDL. Only an empty SQLite database (the local
default, the demo) is still created on first use.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, Engine, MetaData, create_engine, inspect, pool, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from tasks.errors import SchemaMismatch, SchemaOutOfDate

__all__ = [
    "BASELINE",
    "UNVERSIONED",
    "Upgrade",
    "current_revision",
    "ensure_current",
    "head",
    "upgrade",
    "upgrade_sql",
]

SCRIPTS = Path(__file__).resolve().parent / "migrations"
# The revision equal to the schema v0.1.0 made with create_all, before Alembic.
BASELINE = "0001_initial"
TABLE = "stt_jobs"
# Every table of ours: the jobs, and the speed models fitted from them (tasks/learn.py).
TABLES = frozenset({TABLE, "stt_speed_models"})
# pg_advisory_xact_lock's key: any constant of ours ("stt-migr" in ASCII).
_LOCK_KEY = 0x7374742D6D696772
UNVERSIONED = "v0.1.0 (no alembic_version)"


def alembic_config(url: str | None = None, **attributes: Any) -> Config:
    """Alembic's configuration, built in code: the scripts' folder and the target URL.

    The URL travels in ``attributes`` rather than the ini options, where ``%`` in a
    password would be taken for interpolation.
    """
    config = Config(output_buffer=attributes.pop("output_buffer", None))
    config.set_main_option("script_location", str(SCRIPTS))
    config.set_main_option("path_separator", "os")
    # New scripts are named after their id alone: rev_id="0002_add_x" -> 0002_add_x.py.
    config.set_main_option("file_template", "%%(rev)s")
    config.attributes.update(url=url, **attributes)
    return config


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The revision this code needs."""
    revision = _scripts().get_current_head()
    assert revision is not None, "tasks/migrations has no revision"
    return revision


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Only our tables: a shared database may hold others that autogenerate must ignore."""
    return type_ != "table" or name in TABLES


# -- reading the state ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _State:
    revision: str | None  # alembic_version's row; None without one
    has_table: bool  # only read when revision is None


def _read_state(connection: Connection) -> _State:
    """One SELECT when the database is versioned; an inspection only when it is not.

    On a connection outside any transaction: a failed SELECT aborts the one it ran in.
    """
    try:
        rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except DBAPIError:
        # No version table: the statement failed, the connection itself works.
        connection.rollback()
        rows = []
    if rows:
        return _State(str(rows[0][0]), True)
    return _State(None, inspect(connection).has_table(TABLE))


def _engine(target: str | Engine) -> tuple[Engine, bool]:
    """The engine for ``target`` and whether it is ours to dispose of."""
    if isinstance(target, Engine):
        return target, False
    return create_engine(target, poolclass=pool.NullPool), True


def current_revision(target: str | Engine) -> str | None:
    """The database's revision; ``"v0.1.0 (no alembic_version)"`` for one made before
    Alembic, None for an empty database."""
    engine, owned = _engine(target)
    try:
        with engine.connect() as connection:
            state = _read_state(connection)
    finally:
        if owned:
            engine.dispose()
    if state.revision is None and state.has_table:
        return UNVERSIONED
    return state.revision


def ensure_current(target: str | Engine, *, create: bool | None = None) -> str:
    """Check that the schema is what this code needs; return its revision.

    An empty database is created when ``create`` says so (default: only SQLite, where
    there is no DBA and no second host). Anything else behind the code raises
    ``SchemaOutOfDate``. A revision this code does not know is taken as newer (a rolling
    upgrade after ``migrate``): releases only make changes the previous one can run on.
    """
    engine, owned = _engine(target)
    try:
        with engine.connect() as connection:
            state = _read_state(connection)
        wanted = head()
        if state.revision == wanted:
            return wanted
        if state.revision is not None and not _known(state.revision):
            return state.revision
        if create is None:
            create = engine.dialect.name == "sqlite"
        if state.revision is None and create:
            # Another process may be creating it right now: SQLite runs DDL outside the
            # transaction, so its tables show before its stamp. Decide under the lock.
            with _sqlite_file_lock(engine):
                with engine.connect() as connection:
                    state = _read_state(connection)
                if state.revision is None and not state.has_table:
                    _upgrade_locked(engine)
                    return wanted
            if state.revision == wanted or (
                state.revision is not None and not _known(state.revision)
            ):
                return state.revision
        current = state.revision or (UNVERSIONED if state.has_table else "none (no tables)")
        raise SchemaOutOfDate(current, wanted)
    finally:
        if owned:
            engine.dispose()


def _known(revision: str) -> bool:
    with suppress(Exception):
        return _scripts().get_revision(revision) is not None
    return False


# -- changing it ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Upgrade:
    """What ``upgrade`` did: the revision it found (read under the lock) and the new one."""

    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def upgrade(target: str | Engine) -> Upgrade:
    """Upgrade to head, adopting a v0.1.0 database first."""
    engine, owned = _engine(target)
    try:
        before = _upgrade(engine)
    finally:
        if owned:
            engine.dispose()
    return Upgrade(before, head())


def _upgrade(engine: Engine) -> str | None:
    """Run the scripts; the revision found once the lock was held (see env.py)."""
    with _sqlite_file_lock(engine):
        return _upgrade_locked(engine)


def _upgrade_locked(engine: Engine) -> str | None:
    with engine.begin() as connection:
        config = alembic_config(connection=connection)
        command.upgrade(config, "head")
    found: str | None = config.attributes.get("found")
    return found


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """Two processes creating one SQLite file take turns (PostgreSQL: see env.py).

    The lock is a file beside the database, never the database itself: closing any
    descriptor of a file drops every POSIX lock the process holds on it, SQLite's own
    locks included, and a worker's open connection would lose them.
    """
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:" or path.startswith("file:"):
        yield
        return
    import fcntl  # POSIX only, like the workers

    with open(f"{path}.migrate-lock", "ab") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def migration_lock(connection: Connection) -> None:
    """Serialize migrations on PostgreSQL until the current transaction ends."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})


def _baseline_table() -> Any:
    module = _scripts().get_revision(BASELINE).module
    return module.stt_jobs(MetaData())


def adopt_v0_1_0(connection: Connection, context: MigrationContext, scripts: Any) -> bool:
    """Stamp a database v0.1.0 made (``create_all``, no ``alembic_version``) as BASELINE.

    Builds from before v0.1.0 lacked some nullable columns and added them at start; add
    them here the same way. Anything else that differs from BASELINE raises
    ``SchemaMismatch``: stamping a table we did not make would hide the difference.
    Returns whether it stamped.
    """
    if context.get_current_revision() is not None or not inspect(connection).has_table(TABLE):
        return False
    table = _baseline_table()
    present = {c["name"] for c in inspect(connection).get_columns(TABLE)}
    operations = Operations(context)
    for column in table.columns:
        if column.name not in present and column.nullable:
            operations.add_column(TABLE, Column(column.name, column.type, nullable=True))
    diffs = compare_metadata(context, table.metadata)
    if diffs:
        raise SchemaMismatch(
            f"{TABLE} exists without alembic_version but does not match {BASELINE} "
            f"(the schema v0.1.0 created): {diffs}; fix it by hand, then run "
            f"`stt-workers migrate`"
        )
    context.stamp(scripts, BASELINE)
    return True


def upgrade_sql(url: str) -> str:
    """The SQL ``upgrade`` would run on ``url``'s database, as text for a DBA to review.

    Starts from the database's revision when it can be read, else from an empty database.
    """
    parsed = make_url(url)
    missing_file = parsed.get_backend_name() == "sqlite" and not (
        parsed.database and Path(parsed.database).exists()
    )
    try:
        current = None if missing_file else current_revision(url)
        preface = ""
    except DBAPIError as exc:
        current = None
        reason = str(exc.orig or exc).splitlines()[0]
        preface = f"-- could not read the database's revision ({reason}): SQL from empty\n"
    if current == head():
        return f"-- the database is at {current}, the head: nothing to do\n"
    buffer = io.StringIO()
    config = alembic_config(url, output_buffer=buffer)
    if current == UNVERSIONED:
        buffer.write(f"-- a v0.1.0 database: stamp it {BASELINE}, then upgrade\n")
        buffer.write(_missing_columns_sql(url))
        command.stamp(config, BASELINE, sql=True)
        command.upgrade(config, f"{BASELINE}:head", sql=True)
    elif current is not None and _known(current):
        command.upgrade(config, f"{current}:head", sql=True)
    elif current is not None:
        return f"-- the database is at {current}, newer than this code's {head()}\n"
    else:
        command.upgrade(config, "head", sql=True)
    return preface + buffer.getvalue()


def _missing_columns_sql(url: str) -> str:
    """ALTERs for the nullable columns a pre-v0.1.0 table lacks (see adopt_v0_1_0)."""
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            present = {c["name"] for c in inspect(connection).get_columns(TABLE)}
    finally:
        engine.dispose()
    dialect = make_url(url).get_dialect()()
    lines = []
    for column in _baseline_table().columns:
        if column.name not in present:
            kind = column.type.compile(dialect=dialect)
            lines.append(f'ALTER TABLE {TABLE} ADD COLUMN "{column.name}" {kind};\n')
    return "".join(lines)
