"""How long ``stt-workers stats`` and ``usage`` take, and how much memory, on a big jobs table.

Run from the repository root::

    .venv/bin/python -m bench.reports                         # 200k rows, SQLite in a temp dir
    .venv/bin/python -m bench.reports --rows 1000000 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test  # drops stt_jobs!

Rows are bulk-inserted (not through the Store API: that would take far longer than the
reports themselves), spread over 30 days and three models, 97 % completed. ``stats``
fetches four columns of every completed row in its window for the percentiles, so its
time and memory grow with the window; ``usage`` is pure SQL aggregation.
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

from tasks.reports import GroupBy, job_stats, usage_report
from tasks.schema import JobRow
from tasks.store import Store, utcnow

MODELS = ("openai/gpt-4o-mini-transcribe", "aai/slam-1", "#g1_nova-2-general")
BATCH = 10_000


def seed(store: Store, rows: int) -> None:
    rnd = random.Random(7)
    now = utcnow()
    with store.session() as session:
        session.execute(text("DELETE FROM stt_jobs"))
    for start in range(0, rows, BATCH):
        batch: list[dict[str, Any]] = []
        for i in range(start, min(rows, start + BATCH)):
            enqueued = now - timedelta(seconds=rnd.uniform(0, 30 * 86400))
            finished = enqueued + timedelta(seconds=rnd.uniform(3, 120))
            done = i % 33 != 0
            batch.append(
                {
                    "id": uuid.uuid4().hex,
                    "status": "completed" if done else "submitted",
                    "model": MODELS[i % 3],
                    "url": f"https://a.example/{i}.mp3",
                    "polls": rnd.randint(1, 15),
                    "submit_attempts": 1,
                    "enqueued_at": enqueued,
                    "submitted_at": enqueued + timedelta(seconds=1),
                    "finished_at": finished if done else None,
                    "stored_at": finished + timedelta(seconds=rnd.uniform(0.05, 2))
                    if done
                    else None,
                    "audio_seconds": rnd.uniform(5, 900) if done else None,
                    "input_tokens": 500 if done else None,
                    "output_tokens": 80 if done else None,
                    "total_tokens": 580 if done else None,
                    "cost_usd": rnd.uniform(0.001, 0.05) if done else None,
                }
            )
        with store.session() as session:
            session.execute(insert(JobRow), batch)


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        store = Store(url, create=True)  # a scratch database: make its schema
        seed_s = timed(lambda: seed(store, args.rows))
        now = utcnow()
        cases: list[tuple[str, Callable[[], object]]] = [
            ("stats (all time)", lambda: job_stats(store)),
            ("stats --since 24h", lambda: job_stats(store, since=now - timedelta(hours=24))),
            ("usage --by model", lambda: usage_report(store, by=GroupBy.MODEL)),
            ("usage --by day", lambda: usage_report(store, by=GroupBy.DAY)),
        ]
        print(f"{store.engine.dialect.name}, {args.rows} rows (seeded in {seed_s:.1f} s)")
        print(f"{'report':<20} {'seconds':>8} {'peak RSS MiB':>12}")
        print(f"{'(after seeding)':<20} {'':>8} {_peak_mib():>12.0f}")
        for name, call in cases:
            seconds = timed(call)
            print(f"{name:<20} {seconds:>8.2f} {_peak_mib():>12.0f}")
        store.close()


if __name__ == "__main__":
    main()
