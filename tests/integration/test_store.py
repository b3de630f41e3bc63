"""The store on real SQLite and real PostgreSQL: every test runs on both."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tasks.models import JobStatus, Segment, Transcript, Usage, Word
from tasks.store import Store
from tasks.validation import validate_request

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    yield s
    s.close()


def _request(url: str = "https://audio.example/a.mp3", **kw: object) -> object:
    return validate_request(url, kw.pop("model", "openai/gpt-4o-mini-transcribe"), **kw)  # type: ignore[arg-type]


def test_create_then_read_back_every_field(store: Store) -> None:
    req = validate_request(
        "https://audio.example/a.mp3?X-Amz-Signature=abc",
        "aai/slam-1",
        language="en-US",
        prompt="names: Ada",
        temperature=0.3,
        metadata={"user": 7, "tags": ["x"]},
    )
    record, created = store.create_job(req, now=T0)
    assert created
    got = store.get(record.id)
    assert got is not None
    assert (got.status, got.model, got.url) == (JobStatus.PENDING, "aai/slam-1", req.url)
    assert (got.language, got.prompt, got.temperature) == ("en-US", "names: Ada", 0.3)
    assert got.metadata == {"user": 7, "tags": ["x"]}
    assert got.enqueued_at == T0 and got.enqueued_at.tzinfo is not None
    assert got.polls == 0 and not got.done


def test_idempotency_key_returns_the_same_job(store: Store) -> None:
    first, created1 = store.create_job(_request(idempotency_key="order-1"))  # type: ignore[arg-type]
    second, created2 = store.create_job(_request(idempotency_key="order-1"))  # type: ignore[arg-type]
    assert created1 and not created2
    assert first.id == second.id
    assert len(store.list_jobs(limit=None)) == 1


def test_generation_id_is_never_overwritten(store: Store) -> None:
    record, _ = store.create_job(_request())  # type: ignore[arg-type]
    store.mark_submitted(record.id, "gen-first", now=T0)
    store.mark_submitted(record.id, "gen-second", now=T0 + timedelta(seconds=5))
    got = store.get(record.id)
    assert got is not None
    assert (got.generation_id, got.submitted_at, got.status) == (
        "gen-first",
        T0,
        JobStatus.SUBMITTED,
    )


def test_land_then_finish_stores_transcript_usage_and_timings(store: Store) -> None:
    record, _ = store.create_job(_request(), now=T0)  # type: ignore[arg-type]
    store.mark_submitted(record.id, "g1", now=T0 + timedelta(seconds=1))
    store.record_poll(record.id, server_status="generating", polls=1, due_at=T0)
    raw = {
        "text": "hello world",
        "usage": {"input_tokens": 10, "output_tokens": 3, "total_tokens": 13},
    }
    store.land_result(
        record.id,
        server_status="completed",
        raw_result=raw,
        error=None,
        polls=2,
        finished_at=T0 + timedelta(seconds=9),
    )
    # A redelivered poll seeing it again later does not move the first sighting.
    store.land_result(
        record.id,
        server_status="completed",
        raw_result=raw,
        error=None,
        polls=3,
        finished_at=T0 + timedelta(seconds=20),
    )
    transcript = Transcript(
        text="hello world",
        words=(Word("hello", 0.0, 0.4, 0.9), Word("world", 0.5, 0.9, 0.8)),
        segments=(Segment("hello world", 0.0, 0.9, speaker="A"),),
        usage=Usage(
            input_tokens=10, audio_tokens=10, text_tokens=0, output_tokens=3, total_tokens=13
        ),
    )
    assert store.finish(
        record.id,
        JobStatus.COMPLETED,
        transcript=transcript,
        cost_usd=0.000045,
        now=T0 + timedelta(seconds=10),
    )
    got = store.get(record.id)
    assert got is not None and got.done
    assert got.status is JobStatus.COMPLETED
    assert got.text == "hello world"
    assert got.raw_result == raw
    assert got.words == [
        {"text": "hello", "start": 0.0, "end": 0.4, "confidence": 0.9},
        {"text": "world", "start": 0.5, "end": 0.9, "confidence": 0.8},
    ]
    assert got.segments == [{"text": "hello world", "start": 0.0, "end": 0.9, "speaker": "A"}]
    assert (got.input_tokens, got.audio_tokens, got.output_tokens, got.total_tokens) == (
        10,
        10,
        3,
        13,
    )
    assert got.cost_usd == pytest.approx(0.000045)
    assert got.polls == 2
    assert got.finished_at == T0 + timedelta(seconds=9)
    assert got.stored_at == T0 + timedelta(seconds=10)
    assert got.due_at is None


def test_finish_is_idempotent(store: Store) -> None:
    record, _ = store.create_job(_request())  # type: ignore[arg-type]
    assert store.finish(record.id, JobStatus.ERROR, error="audio unreadable")
    assert not store.finish(record.id, JobStatus.COMPLETED, error=None)
    got = store.get(record.id)
    assert got is not None
    assert (got.status, got.error) == (JobStatus.ERROR, "audio unreadable")


def test_list_and_count_by_status(store: Store) -> None:
    ids = [
        store.create_job(_request(f"https://a.example/{i}.wav"), now=T0 + timedelta(seconds=i))[
            0
        ].id  # type: ignore[arg-type]
        for i in range(3)
    ]
    store.finish(ids[0], JobStatus.TIMEOUT, error="deadline")
    assert [r.id for r in store.list_jobs()] == ids[::-1]
    assert [r.id for r in store.list_jobs(status=JobStatus.TIMEOUT)] == [ids[0]]
    assert store.count_by_status() == {"pending": 2, "timeout": 1}
    assert {r.id for r in store.get_many(ids[:2])} == set(ids[:2])
