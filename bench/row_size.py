"""Bytes per stored job, by result family and audio length, with the raw result full vs slim.

Run from the repository root::

    .venv/bin/python -m bench.row_size                      # PostgreSQL and SQLite
    .venv/bin/python -m bench.row_size --rows 2000 --write  # also update docs/benchmarks.md

For each family's model and audio length, a few jobs go through the emulator over HTTP
and through the store's own steps (``land_result``, ``store_outcome``), exactly as a
worker stores them; the rows read back are then copied ``--rows`` times (fresh ids) into
an empty table, which is vacuumed and weighed:

* PostgreSQL: ``pg_total_relation_size`` (heap, TOAST, every index) per row;
* SQLite: the file's pages after ``VACUUM``, per row.

"full" is the row as before tasks/slim.py (the vendor's answer verbatim), "slim" as now.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text

from bench._common import (
    API_KEY,
    Emulator,
    command_line,
    fresh_postgres,
    machine_note,
    markdown_table,
    text_table,
    update_doc,
)
from tasks import migrate
from tasks.client import STTClient
from tasks.models import JobStatus
from tasks.schema import JobRow
from tasks.steps import Outcome, store_outcome
from tasks.store import Store
from tasks.validation import JobRequest

MODELS = {
    "openai": "openai/gpt-4o-mini-transcribe",
    "deepgram": "#g1_nova-2-general",
    "assemblyai": "aai/slam-1",
}
DURATIONS = (60, 600)  # seconds of audio
SAMPLES = 3  # distinct jobs per case; their rows are copied --rows times
GIB = 1024**3


def _finished_rows(
    store: Store, client: STTClient, model: str, seconds: int
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(full, slim) row pairs of ``SAMPLES`` jobs run through the store's steps."""
    pairs = []
    for n in range(SAMPLES):
        url = f"https://media.example.org/{uuid.uuid4().hex}-{n}-force-duration-{seconds}.mp3"
        record, _ = store.create_job(JobRequest(url=url, model=model))
        generation = client.create(model=model, url=url)
        store.mark_submitted(record.id, generation.generation_id)
        while (generation := client.get(generation.generation_id)).status != "completed":
            time.sleep(0.05)
        now = datetime.now(UTC)
        store.land_result(
            record.id,
            server_status=generation.status,
            raw_result=generation.result,
            error=None,
            polls=1,
            finished_at=now,
        )
        full_raw = generation.result
        store_outcome(store, Outcome(record.id, JobStatus.COMPLETED), now=now)
        with store.engine.connect() as conn:
            row = dict(
                conn.execute(select(JobRow.__table__).where(JobRow.id == record.id))
                .mappings()
                .one()
            )
        pairs.append(({**row, "raw_result": full_raw}, row))
    return pairs


_COLUMNS = ("text", "words", "segments", "raw_result")


def _columns(store: Store) -> list[float]:
    """Average stored bytes of each of ``_COLUMNS`` (PostgreSQL: after compression)."""
    size = (
        "pg_column_size({})"
        if store.engine.dialect.name == "postgresql"
        else ("length(CAST({} AS BLOB))")
    )
    query = ", ".join(f"coalesce(avg({size.format(c)}), 0)" for c in _COLUMNS)
    with store.engine.connect() as conn:
        return [float(v) for v in conn.execute(text(f"SELECT {query} FROM stt_jobs")).one()]


def _weigh(store: Store, rows: Sequence[dict[str, Any]], copies: int) -> float:
    """Bytes per row of ``copies`` rows cycled from ``rows``, in an emptied table."""
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM stt_jobs"))
    batch = [{**rows[i % len(rows)], "id": uuid.uuid4().hex} for i in range(copies)]
    with store.engine.begin() as conn:
        for start in range(0, copies, 500):
            conn.execute(insert(JobRow), batch[start : start + 500])
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM FULL stt_jobs"))
            size = conn.execute(text("SELECT pg_total_relation_size('stt_jobs')")).scalar_one()
    else:
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM"))
            pages = conn.execute(text("PRAGMA page_count")).scalar_one()
            page_size = conn.execute(text("PRAGMA page_size")).scalar_one()
            size = pages * page_size
    return float(size) / copies


@contextlib.contextmanager
def _databases(which: str) -> Iterator[Iterator[tuple[str, str]]]:
    with tempfile.TemporaryDirectory() as tmp, fresh_postgres() as pg:

        def urls() -> Iterator[tuple[str, str]]:
            if which in ("both", "postgresql"):
                yield "postgresql", pg
            if which in ("both", "sqlite"):
                yield "sqlite", f"sqlite:///{Path(tmp) / 'rows.sqlite3'}"

        yield urls()


def _kib(value: float) -> str:
    return f"{value / 1024:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000, help="copies weighed per case")
    parser.add_argument("--db", choices=["both", "postgresql", "sqlite"], default="both")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    emulator = Emulator("--fixed", "0", "--queue-delay", "0")
    headers = [
        "database",
        "family",
        "audio",
        "full KiB/job",
        "slim KiB/job",
        "saved",
        "jobs/GiB (slim)",
    ]
    table: list[list[Any]] = []
    parts_headers = ["database", "family", "audio", "raw full", *(f"{c} (slim)" for c in _COLUMNS)]
    parts: list[list[Any]] = []
    try:
        with STTClient(API_KEY, emulator.base_url) as client, _databases(args.db) as urls:
            for name, url in urls:
                migrate.upgrade(url)
                store = Store(url)
                try:
                    for family, model in MODELS.items():
                        for seconds in DURATIONS:
                            pairs = _finished_rows(store, client, model, seconds)
                            full = _weigh(store, [f for f, _ in pairs], args.rows)
                            full_raw = _columns(store)[-1]
                            slim = _weigh(store, [s for _, s in pairs], args.rows)
                            parts.append(
                                [name, family, f"{seconds // 60} min", _kib(full_raw)]
                                + [_kib(v) for v in _columns(store)]
                            )
                            table.append(
                                [
                                    name,
                                    family,
                                    f"{seconds // 60} min",
                                    _kib(full),
                                    _kib(slim),
                                    f"{1 - slim / full:.0%}",
                                    f"{GIB / slim:,.0f}",
                                ]
                            )
                            print(text_table(headers, table[-1:]).splitlines()[-1], flush=True)
                finally:
                    store.close()
    finally:
        emulator.stop()
    print()
    print(text_table(headers, table))
    print("\nKiB per job in each bulky column (stored size):")
    print(text_table(parts_headers, parts))
    if args.write:
        body = "\n\n".join(
            [
                f"`{command_line()}`; {machine_note()}.",
                markdown_table(headers, table),
                "KiB per job in each bulky column (stored size; PostgreSQL compresses):",
                markdown_table(parts_headers, parts),
            ]
        )
        update_doc("row_size", body)


if __name__ == "__main__":
    main()
