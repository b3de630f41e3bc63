"""The prune's batches find their rows through the right indexes (SQLite's plan).

Without statistics SQLite picked the ``status`` index and sorted every finished row
per batch (a temporary B-tree), work that grows with the table while the batch holds
the one write lock. These pin the plan: ``stored_at`` for the inner SELECT, the primary
key for the outer statement, and no temporary sort.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tasks.retention import _batch, cutoff_for, prunable
from tasks.store import Store, utcnow


@pytest.mark.parametrize("keep_text", [False, True])
@pytest.mark.parametrize("after", [None, timedelta(days=90)])
def test_batches_walk_the_stored_at_index_and_delete_by_key(
    tmp_path: Path, keep_text: bool, after: timedelta | None
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'plan.sqlite3'}")
    now = utcnow()
    statement = _batch(
        cutoff_for(timedelta(days=30), now=now),
        1000,
        keep_text=keep_text,
        after=None if after is None else now - after,
    )
    sql = str(statement.compile(store.engine, compile_kwargs={"literal_binds": True}))
    try:
        with store.engine.connect() as conn:
            plan = [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
    finally:
        store.close()
    assert plan[0].startswith("SEARCH stt_jobs USING INDEX sqlite_autoindex_stt_jobs_1 (id=?)")
    assert any("USING INDEX ix_stt_jobs_stored_at (stored_at" in step for step in plan)
    assert not any("TEMP B-TREE" in step or "ix_stt_jobs_status" in step for step in plan)


def test_only_finished_jobs_are_prunable() -> None:
    condition = str(prunable(utcnow(), keep_text=True).compile())
    assert "stt_jobs.status IN" in condition and "stt_jobs.stored_at <" in condition
    assert "callback_status IN" in condition and "raw_result IS NOT NULL" in condition
