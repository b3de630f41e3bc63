"""How fast ``stt-workers prune`` deletes, and how long writers wait while it runs.

Run from the repository root::

    .venv/bin/python -m bench.prune                  # 200,000 rows, PostgreSQL and SQLite
    .venv/bin/python -m bench.prune --rows 1000000 --db postgresql --write

A fresh database gets ``--rows`` finished jobs stored 40-100 days ago (one INSERT ...
SELECT on PostgreSQL, executemany on SQLite; each row ~0.5 KB), then ``prune`` runs in
a thread while another thread plays a worker: it inserts a job and updates it (two
single-statement writes, as the pipeline does) in a loop. The table compares the
writer's latency before and during the prune; a lock on the table would show as a
maximum near the prune's duration.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text, update

from bench._common import (
    command_line,
    fresh_postgres,
    machine_note,
    markdown_table,
    text_table,
    update_doc,
)
from tasks import migrate, retention
from tasks.schema import JobRow
from tasks.store import Store, utcnow

WORDS = json.dumps([{"text": f"w{i}", "start": i / 2, "end": i / 2 + 0.4} for i in range(6)])


def seed(store: Store, rows: int) -> None:
    if store.engine.dialect.name == "postgresql":
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    """
                    INSERT INTO stt_jobs (id, status, model, url, polls, submit_attempts,
                        enqueued_at, finished_at, stored_at, text, words, audio_seconds)
                    SELECT md5('bulk' || i), 'completed', 'aai/slam-1',
                        'https://a.example/' || i || '.mp3', 3, 1,
                        now() - (40 + i % 60) * interval '1 day',
                        now() - (40 + i % 60) * interval '1 day',
                        now() - (40 + i % 60) * interval '1 day',
                        'Hello world, this is a job.', CAST(:words AS json), 3.0
                    FROM generate_series(1, :rows) AS i
                    """
                ),
                {"rows": rows, "words": WORDS},
            )
            conn.execute(text("ANALYZE stt_jobs"))
        return
    now = utcnow()
    words = json.loads(WORDS)
    for start in range(0, rows, 10_000):
        batch: list[dict[str, Any]] = []
        for i in range(start, min(rows, start + 10_000)):
            stored = now - timedelta(days=40 + i % 60)
            batch.append(
                {
                    "id": uuid.uuid4().hex,
                    "status": "completed",
                    "model": "aai/slam-1",
                    "url": f"https://a.example/{i}.mp3",
                    "polls": 3,
                    "submit_attempts": 1,
                    "enqueued_at": stored,
                    "finished_at": stored,
                    "stored_at": stored,
                    "text": "Hello world, this is a job.",
                    "words": words,
                    "audio_seconds": 3.0,
                }
            )
        with store.engine.begin() as conn:
            conn.execute(insert(JobRow), batch)


class Writer(threading.Thread):
    """Plays a worker: insert a job, then update it, one statement each, timed."""

    def __init__(self, store: Store) -> None:
        super().__init__(daemon=True)
        self.store = store
        self.stop = threading.Event()
        self.samples: list[tuple[float, float]] = []  # (monotonic end, seconds)

    def run(self) -> None:
        while not self.stop.is_set():
            job_id = uuid.uuid4().hex
            started = time.monotonic()
            with self.store.engine.begin() as conn:
                conn.execute(
                    insert(JobRow).values(
                        id=job_id,
                        status="submitted",
                        model="aai/slam-1",
                        url="https://a.example/new.mp3",
                        polls=0,
                        submit_attempts=1,
                        enqueued_at=utcnow(),
                    )
                )
            with self.store.engine.begin() as conn:
                conn.execute(update(JobRow).where(JobRow.id == job_id).values(polls=1))
            ended = time.monotonic()
            self.samples.append((ended, (ended - started) / 2))
            time.sleep(0.005)


def _ms(values: list[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.1f}"


@contextmanager
def _database(kind: str) -> Iterator[str]:
    if kind == "postgresql":
        with fresh_postgres() as url:
            yield url
    else:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'prune.sqlite3'}"


def run(kind: str, rows: int, batch_size: int | None) -> list[Any]:
    with _database(kind) as url:
        migrate.upgrade(url)
        store = Store(url)
        try:
            seed_started = time.monotonic()
            seed(store, rows)
            seeded = time.monotonic() - seed_started
            writer = Writer(store)
            writer.start()
            time.sleep(2.0)  # the writer's baseline
            began = time.monotonic()
            report = retention.prune(
                store, cutoff=utcnow() - timedelta(days=30), batch_size=batch_size
            )
            ended = time.monotonic()
            time.sleep(0.5)
            writer.stop.set()
            writer.join()
        finally:
            store.close()
    before = [s for t, s in writer.samples if t < began]
    during = [s for t, s in writer.samples if began <= t <= ended]
    seconds = ended - began
    print(f"{kind}: seeded {rows} rows in {seeded:.1f} s", flush=True)
    return [
        kind,
        f"{report.rows:,}",
        report.batches,
        f"{seconds:.1f}",
        f"{report.rows / seconds:,.0f}",
        f"{statistics.median(before) * 1000:.1f}" if before else "-",
        _ms(during, 0.5),
        _ms(during, 0.99),
        f"{max(during) * 1000:.0f}" if during else "-",
        len(during),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=None, help="default: prune's")
    parser.add_argument("--db", choices=["both", "postgresql", "sqlite"], default="both")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    kinds = ["postgresql", "sqlite"] if args.db == "both" else [args.db]
    headers = [
        "database",
        "rows deleted",
        "batches",
        "seconds",
        "rows/s",
        "write ms before (p50)",
        "during p50",
        "during p99",
        "during max",
        "writes during",
    ]
    table = [run(kind, args.rows, args.batch_size) for kind in kinds]
    print(text_table(headers, table))
    if args.write:
        body = f"`{command_line()}`; {machine_note()}.\n\n{markdown_table(headers, table)}"
        update_doc("prune", body)


if __name__ == "__main__":
    main()
