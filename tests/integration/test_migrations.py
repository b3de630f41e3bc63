"""Schema migrations (tasks/migrate.py) on real SQLite and PostgreSQL databases.

The v0.1.0 fixtures in tests/fixtures/sql are databases that release made, with rows;
each test upgrades or checks a fresh copy through the command line a deployment uses.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tasks import migrate
from tasks.errors import SchemaOutOfDate
from tasks.jobs import transcribe
from tasks.models import JobStatus
from tasks.schema import Base
from tasks.store import Store
from tests.fixtures.services import POSTGRES_URL, ROOT, RedisServer, run_cli, stack_env
from tests.fixtures.stack import Stack

SQL = ROOT / "tests" / "fixtures" / "sql"
CALLBACK_COLUMNS = ("callback_status", "callback_attempts", "callback_error")


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    """An empty PostgreSQL database of its own (the shared one is migrated already)."""
    admin = sqlalchemy.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"stt_migr_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    yield sqlalchemy.engine.make_url(POSTGRES_URL).set(database=name).render_as_string(False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    return str(request.getfixturevalue("fresh_postgres"))


def load_v0_1_0(url: str) -> None:
    """Make ``url`` the database v0.1.0 left: its schema and three jobs."""
    backend = sqlalchemy.engine.make_url(url)
    if backend.get_backend_name() == "sqlite":
        with sqlite3.connect(str(backend.database)) as conn:
            conn.executescript((SQL / "v0_1_0_sqlite.sql").read_text())
        return
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql((SQL / "v0_1_0_postgres.sql").read_text())
    engine.dispose()


def rows(url: str) -> list[dict[str, Any]]:
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        result = conn.exec_driver_sql("SELECT * FROM stt_jobs ORDER BY id").mappings().all()
    engine.dispose()
    return [dict(row) for row in result]


def as_of_0002(row: dict[str, Any]) -> dict[str, Any]:
    """A v0.1.0 row as it reads after 0002_core."""
    upgraded = {k: v for k, v in row.items() if k != "next_poll_at"}
    return {**upgraded, "due_at": row["next_poll_at"], "chain": 0, "redrives": 0}


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = stack_env(broker_url="redis://127.0.0.1:1/0", database_url=url, api_base="", api_key="")
    return run_cli(env, *args)


def test_a_v0_1_0_database_with_jobs_upgrades_with_its_rows_intact(empty_url: str) -> None:
    load_v0_1_0(empty_url)
    before = rows(empty_url)
    assert len(before) == 3
    with pytest.raises(SchemaOutOfDate, match="run `stt-workers migrate`"):
        Store(empty_url)

    done = cli(empty_url, "migrate")
    assert done.returncode == 0, done
    assert f"from v0.1.0 (no alembic_version) to {migrate.head()}" in done.stdout
    assert migrate.current_revision(empty_url) == migrate.head()
    after = rows(empty_url)
    # 0002_core renamed next_poll_at to due_at and added the fence columns, at 0.
    expected = [as_of_0002(row) for row in before]
    assert [{k: r[k] for k in expected[0]} for r in after] == expected
    # 0003: existing keys fall in the unscoped '' scope; fingerprints are computed later.
    assert {(r["idempotency_scope"], r["request_fingerprint"]) for r in after} == {("", None)}
    # The store reads every column family back, and keeps working on the old rows.
    store = Store(empty_url)
    (completed,) = store.list_jobs(status=JobStatus.COMPLETED)
    assert completed.text == "hello world" and completed.words and completed.segments
    assert completed.metadata == {"customer": "acme", "n": 1}
    assert completed.total_tokens == 13 and completed.cost_usd == pytest.approx(0.0123)
    assert completed.callback_status == "delivered" and completed.callback_attempts == 2
    assert completed.enqueued_at.isoformat() == "2025-01-02T03:04:05+00:00"
    (pending,) = store.list_jobs(status=JobStatus.PENDING)
    assert store.find_by_idempotency_key("v010-pending") == pending
    assert pending.chain == 0 and pending.redrives == 0
    # An id longer than v0.1.0's VARCHAR(100) is recorded whole on an old row.
    long_id = "gen-" + "x" * 296
    assert store.claim(pending.id, chain=0, status=JobStatus.PENDING, due_at=pending.enqueued_at)
    assert store.mark_submitted(pending.id, long_id, chain=1)
    assert store.get(pending.id).generation_id == long_id  # type: ignore[union-attr]
    assert store.finish(pending.id, JobStatus.FAILED, error="after the upgrade")
    store.close()
    again = cli(empty_url, "migrate")
    assert again.returncode == 0 and "already at" in again.stdout


def test_an_older_database_gains_the_columns_it_lacked_when_stamped(empty_url: str) -> None:
    """Builds before v0.1.0 lacked the callback columns; migrate adds them, as _migrate did."""
    load_v0_1_0(empty_url)
    engine = sqlalchemy.create_engine(empty_url)
    with engine.begin() as conn:
        for column in CALLBACK_COLUMNS:
            conn.exec_driver_sql(f"ALTER TABLE stt_jobs DROP COLUMN {column}")
    engine.dispose()
    assert migrate.upgrade(empty_url).after == migrate.head()
    upgraded = rows(empty_url)
    assert len(upgraded) == 3 and all(r["callback_status"] is None for r in upgraded)
    assert {r["url"] for r in upgraded} >= {"https://media.example.org/v010/done.wav"}


def test_a_foreign_table_is_not_stamped(empty_url: str) -> None:
    engine = sqlalchemy.create_engine(empty_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE stt_jobs (id VARCHAR(10) PRIMARY KEY, note TEXT)")
    engine.dispose()
    result = cli(empty_url, "migrate")
    assert result.returncode == 1
    assert "does not match 0001_initial" in result.stderr
    assert "Traceback" not in result.stderr
    assert migrate.current_revision(empty_url) == "v0.1.0 (no alembic_version)"


def test_models_and_migrations_agree(empty_url: str) -> None:
    """Fails when tasks/schema.py changes without a revision (or a revision drifts)."""
    migrate.upgrade(empty_url)
    engine = sqlalchemy.create_engine(empty_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_name": migrate.include_name, "compare_type": True}
        )
        diffs = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diffs == [], "models and migrations disagree: write a revision (see docs)"


def test_concurrent_migrate_runs_upgrade_once(fresh_postgres: str) -> None:
    env = stack_env(
        broker_url="redis://127.0.0.1:1/0", database_url=fresh_postgres, api_base="", api_key=""
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "migrate"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0] * 4, outputs
    assert sum("upgraded from none" in out for out in outputs) == 1, outputs
    assert migrate.current_revision(fresh_postgres) == migrate.head()


def test_migrate_sql_prints_the_sql_and_changes_nothing(fresh_postgres: str) -> None:
    result = cli(fresh_postgres, "migrate", "--sql")
    assert result.returncode == 0, result
    assert "CREATE TABLE stt_jobs" in result.stdout
    assert "CREATE INDEX ix_stt_jobs_status" in result.stdout
    assert "INSERT INTO alembic_version (version_num) VALUES ('0001_initial')" in result.stdout
    assert f"version_num='{migrate.head()}'" in result.stdout  # each later revision: UPDATE
    assert migrate.current_revision(fresh_postgres) is None
    # On a v0.1.0 database: stamp, no CREATE TABLE of the existing table.
    load_v0_1_0(fresh_postgres)
    legacy = cli(fresh_postgres, "migrate", "--sql")
    assert legacy.returncode == 0, legacy
    assert "CREATE TABLE stt_jobs" not in legacy.stdout
    assert "INSERT INTO alembic_version" in legacy.stdout


def test_a_worker_on_an_out_of_date_postgres_schema_exits_with_one_line(
    fresh_postgres: str, redis_server: RedisServer
) -> None:
    load_v0_1_0(fresh_postgres)
    env = stack_env(
        broker_url=redis_server.url, database_url=fresh_postgres, api_base="", api_key="k"
    )
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", "worker"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Error: database schema is at v0.1.0 (no alembic_version), code needs "
        f"{migrate.head()}: run `stt-workers migrate`"
    ]


def test_a_worker_on_an_empty_postgres_database_refuses_too(
    fresh_postgres: str, redis_server: RedisServer
) -> None:
    env = stack_env(
        broker_url=redis_server.url, database_url=fresh_postgres, api_base="", api_key="k"
    )
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", "worker"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "database schema is at none (no tables)" in result.stderr
    assert migrate.current_revision(fresh_postgres) is None


def test_transcribe_refuses_an_out_of_date_schema(
    make_stack: Callable[..., Stack], fresh_postgres: str
) -> None:
    load_v0_1_0(fresh_postgres)
    make_stack(db=fresh_postgres, start_worker=False)
    with pytest.raises(SchemaOutOfDate) as caught:
        transcribe("https://media.example.org/after.wav", "aai/slam-1")
    assert str(caught.value) == (
        "database schema is at v0.1.0 (no alembic_version), code needs "
        f"{migrate.head()}: run `stt-workers migrate`"
    )
    assert len(rows(fresh_postgres)) == 3


def test_an_empty_sqlite_database_is_created_on_first_use(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.sqlite3'}"
    store = Store(url)
    assert store.list_jobs() == []
    store.close()
    assert migrate.current_revision(url) == migrate.head()
