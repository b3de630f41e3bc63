"""stats and usage on real SQLite and real PostgreSQL, from rows written by the real Store API.

Every timestamp is set through ``now=``/``finished_at=``, so each expected percentile,
sum and bucket is known exactly; the CLI tests run the real ``stt-workers`` process.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tasks.jobs import transcribe
from tasks.models import JobStatus, Transcript, Usage
from tasks.reports import GroupBy, job_stats, usage_report
from tasks.store import Store
from tasks.validation import validate_request
from tests.fixtures.services import ROOT
from tests.fixtures.stack import Stack

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MINI = "openai/gpt-4o-mini-transcribe"
SLAM = "aai/slam-1"
NOVA = "#g1_nova-2-general"


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    yield s
    s.close()


def add_job(
    store: Store,
    *,
    enqueued: datetime,
    model: str = MINI,
    submitted: datetime | None = None,
    finished: datetime | None = None,
    stored: datetime | None = None,
    status: JobStatus = JobStatus.COMPLETED,
    polls: int = 0,
    usage: Usage | None = None,
    cost: float | None = None,
) -> str:
    """A job taken through the same Store calls the pipeline makes, up to where it got."""
    record, _ = store.create_job(validate_request("https://a.example/x.mp3", model), now=enqueued)
    if submitted is not None:
        store.mark_submitted(record.id, f"gen-{record.id}", now=submitted)
    if finished is not None:
        store.land_result(
            record.id,
            server_status="completed" if status is JobStatus.COMPLETED else "error",
            raw_result={"text": "x"},
            error=None,
            polls=polls,
            finished_at=finished,
        )
    if stored is not None:
        done = status is JobStatus.COMPLETED
        assert store.finish(
            record.id,
            status,
            transcript=Transcript(text="x", usage=usage or Usage()) if done else None,
            error=None if done else f"{status.value} for the test",
            cost_usd=cost,
            polls=polls,
            now=stored,
        )
    return record.id


def stats_fixture(store: Store) -> datetime:
    """Eleven completed jobs with known timings, one of each other status; returns "now".

    Completed job i (0..10) is enqueued at T0 + 10i min, seen finished by the server at
    enqueue + (10(i+1) - i/2) s and stored i/2 s later, after i+1 polls. So
    enqueue -> stored is 10, 20, ..., 110 s; finish -> stored is 0, 0.5, ..., 5 s.
    """
    for i in range(11):
        enqueued = T0 + timedelta(minutes=10 * i)
        stored = enqueued + timedelta(seconds=10 * (i + 1))
        add_job(
            store,
            enqueued=enqueued,
            submitted=enqueued + timedelta(seconds=1),
            finished=stored - timedelta(seconds=i / 2),
            stored=stored,
            polls=i + 1,
        )
    now = T0 + timedelta(minutes=100, seconds=200)  # the last hour starts at T0 + 43m20s
    late = T0 + timedelta(minutes=90)
    add_job(store, enqueued=late + timedelta(minutes=10))  # pending
    add_job(store, enqueued=late + timedelta(minutes=10), submitted=now)  # submitted
    add_job(store, enqueued=late, status=JobStatus.FAILED, stored=now - timedelta(minutes=1))
    add_job(
        store,
        enqueued=late,
        submitted=late,
        finished=now - timedelta(minutes=2),
        stored=now - timedelta(minutes=1),
        status=JobStatus.ERROR,
        polls=4,
    )
    add_job(store, enqueued=T0, submitted=T0, status=JobStatus.TIMEOUT, stored=T0)
    return now


def test_stats_counts_percentiles_polls_and_last_hour(store: Store) -> None:
    now = stats_fixture(store)
    report = job_stats(store, now=now)
    assert report.counts == {
        "pending": 1,
        "submitted": 1,
        "completed": 11,
        "error": 1,
        "failed": 1,
        "timeout": 1,
    }
    assert report.total == 16
    latency = report.enqueue_to_stored  # 10, 20, ..., 110 s over completed jobs only
    assert latency.count == 11
    assert (latency.p50, latency.p90, latency.p99, latency.max) == pytest.approx(
        (60.0, 100.0, 109.0, 110.0)
    )
    server = report.finish_to_stored  # 0, 0.5, ..., 5 s
    assert (server.count, server.p50, server.p90, server.p99, server.max) == pytest.approx(
        (11, 2.5, 4.5, 4.95, 5.0)
    )
    polls = report.polls  # 1..11
    assert (polls.mean, polls.p50, polls.p90, polls.max) == pytest.approx((6.0, 6.0, 10.0, 11.0))
    # Stored within [now - 1 h, now]: completed jobs 5..10, the failed and the error job.
    hour = report.last_hour
    assert (hour.stored, hour.completed) == (8, 6)
    assert hour.per_minute == pytest.approx(8 / 60)


def test_stats_since_counts_what_was_enqueued_and_times_what_was_stored(store: Store) -> None:
    now = stats_fixture(store)
    report = job_stats(store, since=T0 + timedelta(minutes=50), now=now)
    assert report.counts == {
        "pending": 1,
        "submitted": 1,
        "completed": 6,
        "error": 1,
        "failed": 1,
        "timeout": 0,
    }
    latency = report.enqueue_to_stored  # jobs 5..10: 60, 70, ..., 110 s
    assert (latency.count, latency.p50, latency.max) == pytest.approx((6, 85.0, 110.0))
    assert report.polls.mean == pytest.approx(8.5)


def test_stats_of_an_empty_store(store: Store) -> None:
    report = job_stats(store, now=T0)
    assert report.total == 0 and set(report.counts.values()) == {0}
    assert report.enqueue_to_stored.count == 0 and report.enqueue_to_stored.p50 is None
    assert (report.last_hour.stored, report.last_hour.completed) == (0, 0)


def usage_fixture(store: Store) -> None:
    """Final jobs stored on 2026-11-25 UTC from 08:00 to 20:00, and some that must not count."""
    day = datetime(2026, 11, 25, tzinfo=UTC)
    add_job(  # in range at exactly --since
        store,
        enqueued=day,
        stored=day + timedelta(hours=8),
        usage=Usage(
            input_tokens=100, audio_tokens=90, text_tokens=10, output_tokens=20, total_tokens=120,
            audio_seconds=30.0,
        ),
        cost=0.001,
    )  # fmt: skip
    add_job(
        store,
        enqueued=day,
        stored=day + timedelta(hours=9),
        usage=Usage(
            input_tokens=200, audio_tokens=180, text_tokens=20, output_tokens=40, total_tokens=240,
            audio_seconds=90.0,
        ),
        cost=0.002,
    )  # fmt: skip
    add_job(  # minute-priced, no audio length: billed seconds count as audio minutes
        store,
        model=SLAM,
        enqueued=day,
        stored=day + timedelta(hours=10),
        usage=Usage(billed_seconds=120.0),
        cost=0.005,
    )
    add_job(
        store, model=SLAM, enqueued=day, stored=day + timedelta(hours=11), status=JobStatus.FAILED
    )
    add_job(  # the audio's own length wins over billed seconds; no cost estimate adds nothing
        store,
        model=NOVA,
        enqueued=day,
        stored=day + timedelta(hours=12),
        usage=Usage(billed_seconds=61.0, audio_seconds=60.0),
    )
    add_job(store, enqueued=day)  # not final: no usage yet
    add_job(store, enqueued=day, stored=day + timedelta(hours=7, minutes=59), cost=9.0)  # before
    add_job(store, enqueued=day, stored=day + timedelta(hours=20), cost=9.0)  # at --until


SINCE = datetime(2026, 11, 25, 8, tzinfo=UTC)
UNTIL = datetime(2026, 11, 25, 20, tzinfo=UTC)


def test_usage_by_model_sums_tokens_minutes_cost_with_a_total(store: Store) -> None:
    usage_fixture(store)
    report = usage_report(store, by=GroupBy.MODEL, since=SINCE, until=UNTIL)
    rows = {r.group: r for r in report.rows}
    assert list(rows) == sorted([MINI, SLAM, NOVA])
    mini = rows[MINI]
    assert (mini.jobs, mini.completed, mini.audio_minutes) == (2, 2, pytest.approx(2.0))
    assert (
        mini.input_tokens,
        mini.audio_tokens,
        mini.text_tokens,
        mini.output_tokens,
        mini.total_tokens,
    ) == (300, 270, 30, 60, 360)
    assert mini.cost_usd == pytest.approx(0.003)
    slam = rows[SLAM]
    assert (slam.jobs, slam.completed, slam.audio_minutes, slam.total_tokens) == (2, 1, 2.0, 0)
    assert slam.cost_usd == pytest.approx(0.005)
    nova = rows[NOVA]
    # Completed without a cost estimate: unpriced, not free.
    assert (nova.jobs, nova.audio_minutes, nova.cost_usd) == (1, pytest.approx(1.0), None)
    assert (nova.unpriced, mini.unpriced, slam.unpriced) == (1, 0, 0)
    total = report.total
    assert total.unpriced == 1
    assert (total.group, total.jobs, total.completed, total.total_tokens) == ("total", 5, 4, 360)
    assert total.audio_minutes == pytest.approx(5.0)
    assert total.cost_usd == pytest.approx(0.008)
    # Without bounds the two jobs stored outside the range count too; the pending one never.
    assert usage_report(store).total.jobs == 7


def _with_session_zone(url: str, zone: str) -> str:
    """The same PostgreSQL database with another session time zone (libpq ``options``)."""
    return (
        make_url(url)
        .update_query_dict({"options": f"-c timezone={zone}"})
        .render_as_string(hide_password=False)
    )


def test_usage_by_day_buckets_on_utc_midnight(store: Store, database_url: str) -> None:
    just_before = datetime(2026, 11, 25, 23, 59, 59, 500000, tzinfo=UTC)
    plus_two = timezone(timedelta(hours=2))
    for stored in (
        just_before,
        # 01:30 at +02:00 is 23:30 UTC the day before.
        datetime(2026, 11, 26, 1, 30, tzinfo=plus_two),
        datetime(2026, 11, 26, 0, 0, 0, 500000, tzinfo=UTC),
    ):
        add_job(store, enqueued=T0, stored=stored, usage=Usage(audio_seconds=60.0), cost=0.01)
    reader = store
    if database_url.startswith("postgresql"):
        # A session zone far from UTC: bucketing on the session's midnight would put all
        # three jobs on the 26th.
        reader = Store(_with_session_zone(database_url, "Pacific/Auckland"))
        with reader.engine.connect() as conn:
            assert conn.execute(text("SHOW TimeZone")).scalar() == "Pacific/Auckland"
    try:
        report = usage_report(reader, by=GroupBy.DAY)
    finally:
        if reader is not store:
            reader.close()
    assert [(r.group, r.jobs) for r in report.rows] == [("2026-11-25", 2), ("2026-11-26", 1)]
    assert report.rows[0].audio_minutes == pytest.approx(2.0)
    assert report.total.cost_usd == pytest.approx(0.03)


# -- the CLI -----------------------------------------------------------------------------------


def cli(database_url: str, *args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STT_", "AIML_"))}
    env.update(STT_DATABASE_URL=database_url, PYTHONPATH=str(ROOT))
    command = ["-c", code] if code else ["-m", "workers.cli"]
    return subprocess.run(
        [sys.executable, *command, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_usage_csv_by_day_and_table_by_model(store: Store, database_url: str) -> None:
    usage_fixture(store)
    add_job(store, enqueued=T0, stored=datetime(2026, 11, 26, 0, 0, 1, tzinfo=UTC), cost=0.5)
    window = ("--since", "2026-11-25T08:00Z", "--until", "2026-11-26T01:00")
    proc = cli(database_url, "usage", "--by", "day", "--csv", *window)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["day"] for r in rows] == ["2026-11-25", "2026-11-26", "total"]
    assert [int(r["jobs"]) for r in rows] == [6, 1, 7]  # the 20:00 job is in range here
    assert [int(r["completed"]) for r in rows] == [5, 1, 6]
    assert float(rows[0]["audio_minutes"]) == pytest.approx(5.0)
    assert int(rows[0]["audio_tokens"]) == 270
    assert float(rows[-1]["cost_usd"]) == pytest.approx(9.008 + 0.5)

    table = cli(database_url, "usage", "--since", "2026-11-25T08:00", "--until", "2026-11-25T20:00")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["model", "jobs", "done"]
    assert lines[0].split()[-2:] == ["$", "unpriced"]
    total = lines[-1].split()
    assert total[:3] == ["total", "5", "4"] and total[-2:] == ["0.0080", "1"]
    assert any(line.startswith(SLAM) for line in lines)
    nova = next(line for line in lines if line.startswith(NOVA))
    assert nova.split()[-2:] == ["unpriced", "1"]

    empty = cli(database_url, "usage", "--since", "2030-01-01")
    assert empty.returncode == 0 and "no finished jobs" in empty.stdout


def test_cli_stats_json_and_table(store: Store, database_url: str) -> None:
    stats_fixture(store)
    proc = cli(database_url, "stats", "--json", "--since", "2026-11-25T12:50:00+00:00")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["since"] == "2026-11-25T12:50:00+00:00"
    assert data["counts"]["completed"] == 6 and data["total"] == 10
    latency = data["latency_seconds"]["enqueue_to_stored"]
    assert (latency["count"], latency["p50"], latency["max"]) == (6, 85.0, 110.0)
    assert data["polls"]["max"] == 11
    assert data["last_hour"]["stored"] == 0  # 2026 is not the last hour of "now"

    table = cli(database_url, "stats")
    assert table.returncode == 0, table.stderr
    assert "jobs enqueued since the beginning: 16" in table.stdout
    assert "completed jobs stored since the beginning: 11" in table.stdout
    line = next(x for x in table.stdout.splitlines() if "enqueue -> stored" in x)
    assert line.split()[3:] == ["1m00s", "1m40s", "1m49s", "1m50s"]


def test_cli_rejects_bad_time_bounds_naming_the_option(database_url: str) -> None:
    bad = cli(database_url, "stats", "--since", "last tuesday")
    assert bad.returncode == 2
    assert "'--since'" in bad.stderr and "expected a duration like 30m" in bad.stderr
    bad = cli(database_url, "usage", "--until", "2026-02-30")
    assert bad.returncode == 2 and "'--until'" in bad.stderr
    backwards = cli(database_url, "usage", "--since", "2026-11-26", "--until", "2026-11-25")
    assert backwards.returncode == 2
    assert "--since" in backwards.stderr and "must be before --until" in backwards.stderr


def test_cli_usage_plot_writes_a_png(store: Store, database_url: str, tmp_path: Path) -> None:
    usage_fixture(store)
    for by in ("model", "day"):
        target = tmp_path / f"usage-{by}.png"
        proc = cli(database_url, "usage", "--by", by, "--plot", str(target))
        assert proc.returncode == 0, proc.stderr
        assert f"wrote {target}" in proc.stderr
        assert "total" in proc.stdout  # the table is still printed
        data = target.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(data) > 10_000  # two panels of bars and labels, not an empty canvas


def test_cli_plot_without_matplotlib_says_which_extra_to_install(
    database_url: str, tmp_path: Path
) -> None:
    target = tmp_path / "usage.png"
    # A None entry in sys.modules makes "import matplotlib" raise ImportError, as if absent.
    code = "import sys; sys.modules['matplotlib'] = None; from workers.cli import main; main()"
    proc = cli(database_url, "usage", "--plot", str(target), code=code)
    assert proc.returncode == 1
    assert "install 'aiml-stt-workers[plot]'" in proc.stderr
    assert proc.stdout == "" and not target.exists()  # failed before doing any work


# -- end to end --------------------------------------------------------------------------------


def test_stats_after_a_real_worker_ran_jobs(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    urls = [stack.emulator.sample_url(2 + i) for i in range(3)]
    ids = [transcribe(url, model).id for url, model in zip(urls, (MINI, SLAM, NOVA), strict=True)]
    deadline = time.monotonic() + 120
    while not all(r.done for r in stack.store.get_many(ids)):
        assert time.monotonic() < deadline, stack.workers[0].log()[-3000:]
        time.sleep(0.3)

    proc = cli(stack.env["STT_DATABASE_URL"], "stats", "--json", "--since", "1h")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["counts"]["completed"] == 3 and data["total"] == 3
    assert data["polls"]["count"] == 3 and data["polls"]["p50"] >= 1
    latency = data["latency_seconds"]
    assert latency["enqueue_to_stored"]["count"] == 3
    assert 0 < latency["enqueue_to_stored"]["p50"] < 120
    assert 0 <= latency["finish_to_stored"]["max"] <= latency["enqueue_to_stored"]["max"]
    assert (data["last_hour"]["stored"], data["last_hour"]["completed"]) == (3, 3)

    usage = cli(stack.env["STT_DATABASE_URL"], "usage", "--csv", "--since", "1h")
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(usage.stdout))}
    assert set(rows) == {MINI, SLAM, NOVA, "total"}
    assert int(rows["total"]["jobs"]) == 3
    # Deepgram and AssemblyAI report the audio's length (3 s and 4 s); OpenAI reports tokens.
    assert float(rows[SLAM]["audio_minutes"]) == pytest.approx(3 / 60, rel=0.05)
    assert float(rows[NOVA]["audio_minutes"]) == pytest.approx(4 / 60, rel=0.05)
    assert int(rows[MINI]["audio_tokens"]) > 0 and int(rows[MINI]["total_tokens"]) > 0
    assert all(float(rows[m]["cost_usd"]) > 0 for m in (MINI, SLAM, NOVA))
    assert float(rows["total"]["cost_usd"]) == pytest.approx(
        sum(float(rows[m]["cost_usd"]) for m in (MINI, SLAM, NOVA))
    )


def test_usage_shows_unknown_minutes_as_unknown_and_rounds_csv(
    store: Store, database_url: str
) -> None:
    day = datetime(2026, 11, 25, 9, tzinfo=UTC)
    # OpenAI reports tokens, not the audio's length: its minutes are unknown, not 0.
    add_job(store, enqueued=day, stored=day, usage=Usage(output_tokens=7), cost=0.0001)
    add_job(  # 1/3 minute and a cost with float noise
        store,
        model=SLAM,
        enqueued=day,
        stored=day,
        usage=Usage(audio_seconds=20.0),
        cost=0.1 + 0.2,
    )
    table = cli(database_url, "usage").stdout.splitlines()
    mini = next(line for line in table if line.startswith(MINI))
    assert mini.split()[3] == "unknown", table
    assert next(line for line in table if line.startswith(SLAM)).split()[3] == "0.33"
    rows = {
        r["model"]: r
        for r in csv.DictReader(io.StringIO(cli(database_url, "usage", "--csv").stdout))
    }
    assert rows[MINI]["audio_minutes"] == ""
    assert rows[SLAM]["audio_minutes"] == "0.333" and rows[SLAM]["cost_usd"] == "0.300000"
    assert rows["total"]["audio_minutes"] == "0.333"
    assert rows["total"]["cost_usd"] == "0.300100"
