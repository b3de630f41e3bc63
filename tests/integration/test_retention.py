"""Retention on the real stack: ``stt-workers prune`` and ``stt.prune`` on SQLite and
PostgreSQL, only finished jobs, in batches; and the slim raw result a worker stores."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import insert, select, text

from tasks.jobs import transcribe
from tasks.retention import SQLITE_BATCH_SIZE
from tasks.schema import JobRow
from tasks.slim import MARKER, omitted
from tasks.store import Store, utcnow
from tests.fixtures.services import ROOT, run_cli, wait_for
from tests.fixtures.stack import Stack

OLD = timedelta(days=45)
RECENT = timedelta(days=2)
WORDS = [{"text": "Hello", "start": 0.0, "end": 0.5}, {"text": "world.", "start": 0.5, "end": 1.0}]
SEGMENTS = [{"text": "Hello world.", "start": 0.0, "end": 1.0}]


def _id(name: str) -> str:
    return f"{name}-".ljust(32, "0")


def _row(
    name: str,
    *,
    status: str = "completed",
    age: timedelta = OLD,
    callback: str | None = None,
    now: datetime,
) -> dict[str, Any]:
    """A job row as a worker leaves it; ``name`` becomes its id (padded) and its text."""
    stored = now - age
    final = status in ("completed", "error", "failed", "timeout")
    return {
        "id": _id(name),
        "status": status,
        "model": "aai/slam-1",
        "url": f"https://a.example/{name}.mp3",
        "polls": 3,
        "submit_attempts": 1,
        "enqueued_at": stored - timedelta(seconds=30),
        "finished_at": stored if final else None,
        "stored_at": stored if final else None,
        "text": f"Hello world. ({name})" if status == "completed" else None,
        "words": WORDS if status == "completed" else None,
        "segments": SEGMENTS if status == "completed" else None,
        "raw_result": {"id": name, "status": "completed", "audio_duration": 1.0},
        "audio_seconds": 1.0,
        "callback_url": "https://hooks.example/stt" if callback else None,
        "callback_status": callback,
    }


# id -> whether a 30-day prune may remove it.
CASES: dict[str, tuple[dict[str, Any], bool]] = {
    "oldcompleted": ({}, True),
    "olderror": ({"status": "error"}, True),
    "oldfailed": ({"status": "failed"}, True),
    "oldtimeout": ({"status": "timeout"}, True),
    "olddelivered": ({"callback": "delivered"}, True),
    "oldgaveup": ({"callback": "failed"}, True),
    "oldcallbackpending": ({"callback": "pending"}, False),
    "oldnocallback": ({"callback": None}, True),  # no callback_url at all
    "oldpending": ({"status": "pending"}, False),
    "oldsubmitted": ({"status": "submitted"}, False),
    "recentcompleted": ({"age": RECENT}, False),
    "recentfailed": ({"status": "failed", "age": RECENT}, False),
}


def _seed(url: str, extra: int = 0) -> set[str]:
    """The CASES rows plus ``extra`` old completed ones; the ids a prune may remove."""
    now = utcnow()
    rows = [_row(name, now=now, **kwargs) for name, (kwargs, _) in CASES.items()]
    rows += [_row(f"bulk{i}", now=now) for i in range(extra)]
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(JobRow), rows)
    engine.dispose()
    removable = {_id(name) for name, (_, yes) in CASES.items() if yes}
    return removable | {_id(f"bulk{i}") for i in range(extra)}


def _ids(url: str) -> set[str]:
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        ids = set(conn.execute(select(JobRow.id)).scalars())
    engine.dispose()
    return ids


def cli(url: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STT_")}
    env.update(STT_DATABASE_URL=url, PYTHONPATH=str(ROOT))
    return run_cli(env, *args, timeout=timeout)


@pytest.fixture
def seeded(database_url: str) -> Iterator[tuple[str, set[str]]]:
    Store(database_url).close()  # SQLite: the schema on first use, as the CLI would
    yield database_url, _seed(database_url, extra=25)


def test_dry_run_counts_and_deletes_nothing(seeded: tuple[str, set[str]]) -> None:
    url, removable = seeded
    before = _ids(url)
    proc = cli(url, "prune", "--older-than", "30d", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert f"dry run: {len(removable)} finished jobs stored before" in proc.stdout
    assert "would be deleted; nothing was changed" in proc.stdout
    assert _ids(url) == before


def test_prune_deletes_only_old_finished_jobs_in_batches(seeded: tuple[str, set[str]]) -> None:
    url, removable = seeded
    before = _ids(url)
    proc = cli(url, "prune", "--older-than", "30d", "--batch-size", "7")
    assert proc.returncode == 0, proc.stderr
    # 32 rows in batches of 7: four full ones, and a short one that ends the run.
    assert len(removable) == 32
    assert "deleted 32 finished jobs stored before" in proc.stdout
    assert "(5 batches," in proc.stdout
    assert _ids(url) == before - removable
    again = cli(url, "prune", "--older-than", "30d")
    assert "deleted 0 finished jobs" in again.stdout
    # An ISO date works as the bound too; the recent ones are 2 days old.
    cutoff = (utcnow() - timedelta(days=1)).date().isoformat()
    recent = cli(url, "prune", "--older-than", cutoff)
    assert "deleted 2 finished jobs" in recent.stdout, recent.stdout + recent.stderr


def test_keep_text_empties_the_bulky_columns_and_result_still_reads(
    seeded: tuple[str, set[str]],
) -> None:
    url, removable = seeded
    before = _ids(url)
    proc = cli(url, "prune", "--older-than", "30d", "--keep-text")
    assert proc.returncode == 0, proc.stderr
    assert f"emptied {len(removable)} finished jobs" in proc.stdout
    assert _ids(url) == before  # no row is gone
    store = Store(url)
    try:
        kept = store.get(_id("oldcompleted"))
        assert kept is not None
        assert (kept.raw_result, kept.words, kept.segments) == (None, None, None)
        assert kept.text == "Hello world. (oldcompleted)" and kept.audio_seconds == 1.0
        untouched = store.get(_id("recentcompleted"))
        assert untouched is not None and untouched.words == WORDS
        assert store.get(_id("oldcallbackpending")).words == WORDS  # type: ignore[union-attr]
    finally:
        store.close()
    job = _id("oldcompleted")
    assert cli(url, "result", job).stdout.strip() == "Hello world. (oldcompleted)"
    srt = cli(url, "result", job, "--format", "srt").stdout
    assert srt == "1\n00:00:00,000 --> 00:00:01,000\nHello world. (oldcompleted)\n\n"
    # Emptied rows are not picked again; a plain prune still deletes them.
    assert (
        "emptied 0 finished jobs" in cli(url, "prune", "--older-than", "30d", "--keep-text").stdout
    )
    assert f"deleted {len(removable)}" in cli(url, "prune", "--older-than", "30d").stdout


def test_prune_refuses_a_bound_in_the_future_or_nonsense(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    future = cli(url, "prune", "--older-than", "2999-01-01")
    assert future.returncode == 2 and "must be in the past" in future.stderr
    bad = cli(url, "prune", "--older-than", "a while")
    assert bad.returncode == 2 and "expected a duration like 30m" in bad.stderr
    missing = cli(url, "prune", "--older-than", "30d")
    assert missing.returncode == 1 and "no store at" in missing.stderr
    assert not (tmp_path / "jobs.sqlite3").exists()  # a prune never creates a database


def test_beat_task_prunes_through_a_real_worker(make_stack: Callable[..., Stack]) -> None:
    """``stt.prune`` (what beat sends when STT_RETENTION_DAYS is set) on a worker."""
    from tasks.pipeline import prune

    stack = make_stack(STT_RETENTION_DAYS="30")
    url = stack.env["STT_DATABASE_URL"]
    removable = _seed(url)
    before = _ids(url)
    prune.delay(days=30.0)
    wait_for(lambda: _ids(url) == before - removable, 60, "stt.prune to delete the old jobs")


def _rows(url: str) -> dict[str, tuple[Any, ...]]:
    """Every row, every column, by id."""
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        rows = {row.id: tuple(row) for row in conn.execute(select(JobRow.__table__))}
    engine.dispose()
    return rows


def _prune_runs(log: str) -> list[dict[str, Any]]:
    """What each ``stt.prune`` task returned, from the worker's "succeeded" lines."""
    return [
        ast.literal_eval(line[line.index("{") :])
        for line in log.splitlines()
        if "Task stt.prune[" in line and " succeeded in " in line
    ]


def test_beat_task_on_sqlite_prunes_batch_by_batch_each_in_its_own_task(
    make_stack: Callable[..., Stack],
) -> None:
    """More old jobs than one SQLite batch: ``stt.prune`` deletes one batch and sends
    itself again (with a countdown, the same cutoff, the budget left) instead of sleeping
    in a worker slot, until a short batch. Every eligible row is gone, every other row is
    exactly as it was."""
    from tasks.pipeline import prune

    stack = make_stack(STT_RETENTION_DAYS="30")
    url = stack.env["STT_DATABASE_URL"]
    assert url.startswith("sqlite:")
    # The 7 removable CASES + 243 old completed ones: batches of 100, 100 and 50.
    removable = _seed(url, extra=2 * SQLITE_BATCH_SIZE + 43)
    assert len(removable) == 2 * SQLITE_BATCH_SIZE + 50
    rows = _rows(url)
    kept = {job_id: row for job_id, row in rows.items() if job_id not in removable}
    assert len(kept) == 5  # pending, submitted, callback pending, the two recent ones
    prune.delay(days=30.0)
    worker = stack.workers[0]
    wait_for(lambda: len(_prune_runs(worker.log())) == 3, 60, "three stt.prune tasks")
    assert _rows(url) == kept
    runs = _prune_runs(worker.log())
    assert runs == [
        {"rows": SQLITE_BATCH_SIZE, "batches": 1, "complete": False},
        {"rows": SQLITE_BATCH_SIZE, "batches": 1, "complete": False},
        {"rows": 50, "batches": 1, "complete": True},
    ]
    time.sleep(1)  # the last one sent nothing more
    assert len(_prune_runs(worker.log())) == 3


# -- PostgreSQL, 200,000 rows, a worker writing all along -----------------------------------

BULK_ROWS = 200_000


def _bulk_insert_old_jobs(url: str, rows: int) -> None:
    """``rows`` finished jobs stored 40-100 days ago, in one INSERT ... SELECT."""
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                """
                INSERT INTO stt_jobs (id, status, model, url, polls, submit_attempts,
                    enqueued_at, finished_at, stored_at, text, words, raw_result, audio_seconds)
                SELECT md5('bulk' || i), 'completed', 'aai/slam-1',
                    'https://a.example/' || i || '.mp3', 3, 1,
                    now() - (40 + i % 60) * interval '1 day',
                    now() - (40 + i % 60) * interval '1 day',
                    now() - (40 + i % 60) * interval '1 day',
                    'Hello world.', CAST(:words AS json), CAST(:raw AS json), 1.0
                FROM generate_series(1, :rows) AS i
                """
            ),
            {"rows": rows, "words": json.dumps(WORDS), "raw": json.dumps({"id": "x"})},
        )
        conn.execute(text("ANALYZE stt_jobs"))
    engine.dispose()


def test_200k_rows_pruned_on_postgres_while_a_worker_writes_and_a_row_is_locked(
    make_stack: Callable[..., Stack], postgres_url: str
) -> None:
    """Batches lock rows, never the table: jobs keep landing while the prune runs, and a
    row another transaction holds is skipped (SKIP LOCKED), not waited for."""
    from tests.fixtures.services import _truncate

    _truncate(postgres_url)
    stack = make_stack(db=postgres_url)
    _bulk_insert_old_jobs(postgres_url, BULK_ROWS)
    held_id = hashlib.md5(b"bulk1").hexdigest()  # the id the INSERT gave row 1

    # Another transaction holds one old row for the whole prune.
    holder = sqlalchemy.create_engine(postgres_url)
    held = holder.connect()
    held.begin()
    held.execute(text("SELECT id FROM stt_jobs WHERE id = :id FOR UPDATE"), {"id": held_id})

    outcome: dict[str, subprocess.CompletedProcess[str]] = {}
    pruning = threading.Thread(
        target=lambda: outcome.setdefault(
            "prune", cli(postgres_url, "prune", "--older-than", "30d")
        )
    )
    pruning.start()
    # Meanwhile the web app submits jobs and the worker stores them.
    handles = [
        transcribe(stack.emulator.sample_url(3) + f"?n={n}", "aai/slam-1") for n in range(12)
    ]
    records = [h.wait(timeout=120) for h in handles]
    pruning.join(timeout=300)
    held.rollback()
    held.close()
    holder.dispose()

    proc = outcome["prune"]
    assert proc.returncode == 0, proc.stderr
    assert f"deleted {BULK_ROWS - 1} finished jobs" in proc.stdout, proc.stdout
    assert [r.status.value for r in records] == ["completed"] * 12
    assert _ids(postgres_url) == {r.id for r in records} | {held_id}
    # Once released, the next run takes the row it skipped.
    assert "deleted 1 finished jobs" in cli(postgres_url, "prune", "--older-than", "30d").stdout


# -- the slim raw result, as a worker stores it --------------------------------------------


@pytest.mark.parametrize(
    "model", ["openai/gpt-4o-mini-transcribe", "#g1_nova-2-general", "aai/slam-1"]
)
def test_a_worker_stores_the_slim_raw_result_and_every_reader_still_works(
    stack: Stack, model: str
) -> None:
    url = stack.emulator.sample_url(3) + f"?m={uuid.uuid4().hex}"
    record = transcribe(url, model).wait(timeout=120)
    assert record.status.value == "completed", record.error
    assert record.text == stack.emulator.expected_transcript(url)
    raw = record.raw_result
    assert raw is not None and "column" in raw[MARKER]["reason"]
    assert "text" in omitted(raw).values()
    if model != "openai/gpt-4o-mini-transcribe":  # the gpt-4o models give no timings
        assert set(omitted(raw).values()) == {"text", "words", "segments"}
        assert record.words and record.segments
    env_url = stack.env["STT_DATABASE_URL"]
    as_json = json.loads(cli(env_url, "result", record.id, "--format", "json").stdout)
    assert as_json["raw_result"][MARKER]["omitted"] == omitted(raw)
    srt = cli(env_url, "result", record.id, "--format", "srt")
    if model == "openai/gpt-4o-mini-transcribe":
        # Tokens but no duration, no timings: as before slimming, nothing to place in time.
        assert srt.returncode == 1 and "no word or segment timings" in srt.stderr
    else:
        assert srt.returncode == 0 and srt.stdout.startswith("1\n00:00:0"), srt.stderr
    assert "completed" in cli(env_url, "status", record.id).stdout
