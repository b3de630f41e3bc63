"""Idempotency keys that protect callers, and requests refused before they are stored
(issue 12, cases 6, 7 and 11), on SQLite and PostgreSQL with a real broker and worker.

Following Stripe: a key is unique within its tenant, a key sent again with other
parameters is an error (never another request's job), and a request that did not start
(its enqueue failed) leaves no result behind, so its key is not spent.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tasks.errors import IdempotencyKeyReused, InvalidInput
from tasks.jobs import transcribe
from tasks.models import JobStatus
from tests.fixtures.services import start_redis
from tests.fixtures.stack import Stack
from tests.fixtures.webapps import add_example_path
from tests.integration.test_pipeline import wait_all

MODEL = "aai/slam-1"
SIGNED = "https://bucket.example.org/call.mp3?X-Amz-Signature=0123456789abcdef"


def test_a_key_whose_enqueue_failed_is_not_spent(
    make_stack: Callable[..., Stack], tmp_path: Path, db: str, reliability: Callable[..., Any]
) -> None:
    broker = start_redis(tmp_path / "broker")
    try:
        stack = make_stack(db=db, start_worker=False, STT_BROKER_URL=broker.url)
        broker.process.terminate()
        broker.process.wait(10)
        url = "https://media.example.org/idem/broker-down.mp3"
        with pytest.raises(Exception) as down:
            transcribe(url, MODEL, idempotency_key="K-1")
        assert not isinstance(down.value, InvalidInput)
        (failed,) = stack.store.list_jobs(limit=None)
        assert failed.status is JobStatus.FAILED
        assert (failed.error or "").startswith("could not enqueue")

        broker = start_redis(tmp_path / "broker", port=broker.port)
        stack.start_worker()
        retried = transcribe(url, MODEL, idempotency_key="K-1")
        assert retried.id != failed.id
        assert transcribe(url, MODEL, idempotency_key="K-1").id == retried.id
        (record,) = wait_all(stack, [retried.id], timeout=60)
        assert record.status is JobStatus.COMPLETED
        assert stack.emulator.create_counts()[url] == 1
        reliability(
            f"enqueue failed (broker down), retried with the same key ({db[:10]})",
            jobs_in=3,
            jobs_stored=2,
            api_duplicates=0,
            recover_s=None,
        )
    finally:
        broker.process.terminate()
        broker.process.wait(10)


def test_keys_are_scoped_by_tenant_and_reuse_with_other_parameters_is_refused(
    make_stack: Callable[..., Stack], db: str
) -> None:
    stack = make_stack(db=db)
    first, second = "https://media.example.org/idem/acme.mp3", SIGNED
    acme = transcribe(first, MODEL, idempotency_key="order-1", tenant="acme")
    globex = transcribe(second, MODEL, idempotency_key="order-1", tenant="globex")
    unscoped = transcribe(first, MODEL, idempotency_key="order-1")
    assert len({acme.id, globex.id, unscoped.id}) == 3

    # Same tenant, same key, other parameters: an error that quotes neither request.
    for changed in (
        {"url": second},
        {"url": first, "language": "en"},
        {"url": first, "metadata": {"a": 1}},
    ):
        with pytest.raises(IdempotencyKeyReused) as reused:
            transcribe(model=MODEL, idempotency_key="order-1", tenant="acme", **changed)
        assert reused.value.field == "idempotency_key"
        assert "bucket.example.org" not in str(reused.value) and "acme" not in str(reused.value)
    with pytest.raises(IdempotencyKeyReused):
        transcribe(first, MODEL, idempotency_key="order-1", tenant="globex")
    # The same request again: the same job.
    assert transcribe(first, MODEL, idempotency_key="order-1", tenant="acme").id == acme.id

    records = {r.id: r for r in wait_all(stack, [acme.id, globex.id, unscoped.id], timeout=60)}
    assert records[acme.id].url == first and records[globex.id].url == second
    assert all(r.status is JobStatus.COMPLETED for r in records.values())
    assert len(stack.store.list_jobs(limit=None)) == 3
    assert stack.emulator.create_counts() == {first: 2, second: 1}


def test_the_flask_example_scopes_keys_by_its_tenant_header(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(STT_CALLBACK_SECRET="flask-example-secret-0123456789", start_worker=False)
    add_example_path("flask_app")
    from stt_flask import create_app

    client = create_app({"TESTING": True}).test_client()

    def post(url: str, tenant: str) -> Any:
        body = {"url": url, "model": MODEL, "idempotency_key": "checkout-9"}
        return client.post("/jobs", json=body, headers={"X-Tenant": tenant})

    mine = post("https://media.example.org/idem/mine.mp3", "tenant-a")
    theirs = post("https://media.example.org/idem/theirs.mp3", "tenant-b")
    assert mine.status_code == theirs.status_code == 202
    assert mine.get_json()["id"] != theirs.get_json()["id"]
    again = post("https://media.example.org/idem/mine.mp3", "tenant-a")
    assert again.status_code == 202 and again.get_json()["id"] == mine.get_json()["id"]
    # Tenant b's key with tenant a's audio: refused, and nothing of job a is shown.
    other = post("https://media.example.org/idem/mine.mp3", "tenant-b")
    assert other.status_code == 400
    assert other.get_json()["field"] == "idempotency_key"
    assert mine.get_json()["id"] not in other.get_data(as_text=True)
    assert "mine.mp3" not in other.get_data(as_text=True)
    assert len(stack.store.list_jobs(limit=None)) == 2


BAD_INPUT: list[tuple[dict[str, Any], str]] = [
    ({"url": SIGNED + "\x00"}, "url"),
    ({"url": SIGNED, "prompt": "hello\x00"}, "prompt"),
    ({"url": SIGNED, "idempotency_key": "k\x00"}, "idempotency_key"),
    ({"url": SIGNED, "tenant": "acme\x00"}, "tenant"),
    ({"url": SIGNED, "language": "en\n"}, "language"),
    ({"url": SIGNED, "metadata": {"note": "x\x00"}}, "metadata"),
]


def test_hostile_input_is_refused_naming_the_field_and_nothing_is_stored(
    make_stack: Callable[..., Stack], db: str
) -> None:
    stack = make_stack(db=db, start_worker=False)
    deep: dict[str, Any] = {}
    for _ in range(5000):
        deep = {"a": deep}
    for fields, field in [*BAD_INPUT, ({"url": SIGNED, "metadata": deep}, "metadata")]:
        with pytest.raises(InvalidInput) as refused:
            transcribe(model=MODEL, **fields)
        assert refused.value.field == field, (field, str(refused.value))
        assert "0123456789abcdef" not in str(refused.value)
        assert "hello" not in str(refused.value) and "acme" not in str(refused.value)
    assert stack.store.list_jobs(limit=None) == []
    assert stack.broker_messages() == 0
