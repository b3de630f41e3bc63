"""Duration-aware polling end to end (issue 15, docs/polling.md): a real worker, Redis, the
store on SQLite and PostgreSQL, the emulator, and real audio files on a local server.

What a user sees: where the job's duration came from (given, probed, api), when the first
poll reached the API, how many polls the job cost, and the speed model beat learned.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from tasks.jobs import transcribe
from tasks.learn import fit_speed_models, speed_row
from tasks.models import JobStatus
from tasks.pipeline import fit_speed
from tasks.probe import PROBE_BYTES
from tasks.schema import JobRow, SpeedRow
from tasks.speed import SpeedModel
from tasks.store import JobRecord, Store, utcnow
from tests.fixtures.audio_files import AudioServer, wav_file
from tests.fixtures.services import run_cli, wait_for
from tests.fixtures.stack import Stack

LOCAL = "127.0.0.0/8"  # the audio server and the emulator listen on loopback
MODEL = "aai/nano"  # an AssemblyAI-shaped answer: it reports audio_duration


def save_speed(store: Store, model: str, speed: SpeedModel) -> None:
    with store.session() as session:
        session.add(speed_row(model, speed, jobs=100, fitted_at=utcnow()))


def speed_rows(store: Store) -> dict[str, SpeedRow]:
    with store.session() as session:
        rows = list(session.scalars(select(SpeedRow)))
        session.expunge_all()
    return {row.model: row for row in rows}


def wait_done(stack: Stack, job_id: str, timeout: float = 60) -> JobRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = stack.store.get(job_id)
        if record is not None and record.done:
            return record
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not final\n{stack.workers[0].log()[-3000:]}")


def api_times(stack: Stack, record: JobRecord) -> tuple[float, list[float]]:
    """When the job was created at the API, and when each of its polls arrived."""
    assert record.generation_id is not None
    created = stack.emulator.job(record.generation_id)["created_ts"]
    polls = [e["ts"] for e in stack.emulator.requests_log(f"/v1/stt/{record.generation_id}")]
    return created, polls


def range_requests(audio_server: AudioServer) -> list[dict[str, str]]:
    """The probe's requests: the only ones asking for a byte range."""
    return [r for r in audio_server.requests if "range" in r]


def test_a_given_duration_puts_the_first_poll_near_the_forecast(
    make_stack: Callable[..., Stack], db: str
) -> None:
    stack = make_stack(db)
    # The server: queued 0.2 s, then 0.1 s per second of audio (30 s of audio: ~3.2 s).
    stack.emulator.configure(fixed=None, speed=0.1, queue_delay=0.2)
    speed = SpeedModel(queue=0.2, rate=0.1, sigma=0.05)
    save_speed(stack.store, MODEL, speed)
    forecast = speed.forecast(30.0)
    assert forecast is not None

    record = wait_done(
        stack, transcribe("https://media.example.org/force-duration-30.wav", MODEL, duration=30).id
    )

    assert record.status is JobStatus.COMPLETED, record.error
    assert (record.duration, record.duration_source) == (30.0, "given")
    created, polls = api_times(stack, record)
    # Today's schedule (0.2 s, then x1.5 to 1 s in these tests) would poll at once and
    # six times before the job ends; the forecast waits for its low quantile.
    assert forecast.low - 0.3 <= polls[0] - created <= forecast.low + 1.5, (polls, created)
    assert record.polls == len(polls) <= 4
    # The interval the server finished in is stored, for the next fit.
    assert record.pending_at is not None and record.submitted_at is not None
    assert record.pending_at < record.finished_at  # type: ignore[operator]


def test_without_a_speed_model_the_schedule_is_todays(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack()
    stack.emulator.configure(fixed=None, speed=0.1, queue_delay=0.2)
    record = wait_done(
        stack, transcribe("https://media.example.org/force-duration-30.wav", MODEL, duration=30).id
    )
    assert record.status is JobStatus.COMPLETED, record.error
    created, polls = api_times(stack, record)
    assert polls[0] - created < 1.5  # STT_POLL_FIRST_DELAY (0.2 s here), not the forecast's
    assert len(polls) >= 4


def test_the_audio_is_probed_through_the_guard_and_its_duration_stored(
    make_stack: Callable[..., Stack], audio_server: AudioServer
) -> None:
    stack = make_stack(STT_CALLBACK_ALLOW_NETWORKS=LOCAL, STT_PROBE_AUDIO="1")
    stack.emulator.configure(fixed=None, speed=0.5, queue_delay=0.2)
    speed = SpeedModel(queue=0.2, rate=0.5, sigma=0.05)
    save_speed(stack.store, MODEL, speed)
    audio_server.files["talk.wav"] = wav_file(6.0)

    record = wait_done(stack, transcribe(audio_server.url("talk.wav"), MODEL).id)

    assert record.status is JobStatus.COMPLETED, record.error
    assert record.duration_source == "probed"
    assert record.duration == pytest.approx(6.0, abs=0.01)
    (probe,) = range_requests(audio_server)
    assert probe["range"] == f"bytes=0-{PROBE_BYTES - 1}"
    assert not {"authorization", "cookie"} & set(probe)
    forecast = speed.forecast(record.duration)
    assert forecast is not None
    created, polls = api_times(stack, record)
    assert polls[0] - created >= forecast.low - 0.3, (polls, created)


def test_stt_probe_audio_0_sends_no_probe_and_the_api_duration_is_kept(
    make_stack: Callable[..., Stack], audio_server: AudioServer
) -> None:
    stack = make_stack(STT_CALLBACK_ALLOW_NETWORKS=LOCAL, STT_PROBE_AUDIO="0")
    audio_server.files["talk.wav"] = wav_file(4.0)

    record = wait_done(stack, transcribe(audio_server.url("talk.wav"), MODEL).id)

    assert record.status is JobStatus.COMPLETED, record.error
    assert range_requests(audio_server) == []
    # Neither given nor probed: the duration the API reported (audio_duration), for learning.
    assert record.duration_source == "api"
    assert record.duration == pytest.approx(4.0, abs=0.01) == record.audio_seconds


def test_a_private_address_is_not_probed_and_the_job_still_completes(
    make_stack: Callable[..., Stack], audio_server: AudioServer
) -> None:
    stack = make_stack(STT_PROBE_AUDIO="1")  # no STT_CALLBACK_ALLOW_NETWORKS: loopback refused
    audio_server.files["talk.wav"] = wav_file(3.0)

    record = wait_done(stack, transcribe(audio_server.url("talk.wav"), MODEL).id)

    assert record.status is JobStatus.COMPLETED, record.error
    assert range_requests(audio_server) == []  # refused before connecting
    assert record.duration_source == "api"  # unknown until the API said


def test_a_bad_duration_is_refused_at_enqueue_naming_the_field(stack: Stack) -> None:
    from tasks.errors import InvalidInput

    for bad in (0, -1.0, math.nan, math.inf, 1e9):
        with pytest.raises(InvalidInput) as info:
            transcribe("https://media.example.org/a.wav", MODEL, duration=bad)
        assert info.value.field == "duration"
    assert stack.store.list_jobs() == []
    result = run_cli(stack.env, "submit", "https://media.example.org/a.wav", "--duration", "-5")
    assert result.returncode == 2 and "'duration'" in result.stderr, result.stderr
    assert "above 0" in result.stderr
    result = run_cli(stack.env, "submit", "https://media.example.org/a.wav", "--duration", "90")
    assert result.returncode == 0, result.stderr
    record = stack.store.get(result.stdout.strip())
    assert record is not None and (record.duration, record.duration_source) == (90.0, "given")
    shown = run_cli(stack.env, "status", record.id)
    assert "90 s (given)" in shown.stdout, shown.stdout


def _finished_jobs(
    store: Store, model: str, count: int, truth: SpeedModel, rng: random.Random
) -> None:
    """Jobs as the pipeline stores them: server time known only between the last pending
    poll and the poll that saw the job done (every 10 s, as the default schedule)."""
    now = utcnow()
    rows = []
    for _ in range(count):
        duration = rng.uniform(5, 1200)
        server = truth.queue + truth.rate * duration * rng.lognormvariate(0, truth.sigma)
        submitted = now - timedelta(hours=1)
        first = 8.0
        polls = max(0, math.ceil((server - first) / 10.0)) + 1
        done_at = first + 10.0 * (polls - 1)
        rows.append(
            {
                "id": uuid.uuid4().hex,
                "status": JobStatus.COMPLETED.value,
                "model": model,
                "url": "https://media.example.org/learn.wav",
                "enqueued_at": submitted,
                "submitted_at": submitted,
                "pending_at": submitted + timedelta(seconds=max(0.0, done_at - 10.0))
                if polls > 1
                else submitted,
                "finished_at": submitted + timedelta(seconds=done_at),
                "stored_at": now,
                "audio_seconds": duration,
                "polls": polls,
                "submit_attempts": 1,
                "chain": 1,
                "redrives": 0,
                "idempotency_scope": "",
            }
        )
    with store.session() as session:
        session.execute(insert(JobRow), rows)


def test_beat_s_fit_learns_each_model_s_speed_from_censored_jobs(
    make_stack: Callable[..., Stack], db: str
) -> None:
    stack = make_stack(db)
    truth = SpeedModel(queue=4.0, rate=0.1, sigma=0.25)
    rng = random.Random(15)
    _finished_jobs(stack.store, "aai/best", 200, truth, rng)
    _finished_jobs(stack.store, "aai/nano", 10, truth, rng)  # too few: no model

    fit_speed.delay()  # as beat sends it; the worker runs it
    wait_for(lambda: speed_rows(stack.store), 30, "a fitted speed model")
    rows = speed_rows(stack.store)
    assert set(rows) == {"aai/best"}
    best = rows["aai/best"]
    assert best.jobs == 200
    assert best.rate == pytest.approx(truth.rate, rel=0.15)
    assert best.sigma == pytest.approx(truth.sigma, abs=0.1)
    assert 0 <= best.queue <= 15
    # A refit with the data gone (all pruned) removes the model: today's schedule again.
    with stack.store.session() as session:
        session.query(JobRow).delete()
    assert fit_speed_models(stack.store, now=utcnow()).fitted == {}
    assert speed_rows(stack.store) == {}
