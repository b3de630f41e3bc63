"""Completion callbacks end to end: real worker, emulator, and a real HTTP receiver."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

from tasks.callbacks import encode_body, job_view
from tasks.errors import ConfigurationError, InvalidInput
from tasks.jobs import transcribe
from tasks.models import JobStatus
from tasks.pipeline import callback, store, sweep
from tasks.signing import JOB_ID_HEADER, TIMESTAMP_HEADER, verify_signature
from tasks.steps import Outcome
from tasks.store import JobRecord
from tests.fixtures.receiver import Receiver, receiver
from tests.fixtures.services import ROOT, wait_for
from tests.fixtures.stack import Stack

__all__ = ["receiver"]  # the fixture, imported for pytest

SECRET = "test-callback-secret-0123456789abcdef"
MODEL = "aai/slam-1"
LOCAL = "127.0.0.0/8"


def callback_stack(make_stack: Callable[..., Stack], **extra: str) -> Stack:
    # The receiver listens on 127.0.0.1: allow loopback, as a deployment allows its network.
    return make_stack(STT_CALLBACK_SECRET=SECRET, STT_CALLBACK_ALLOW_NETWORKS=LOCAL, **extra)


def wait_callback(stack: Stack, job_id: str, timeout: float = 60) -> JobRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = stack.store.get(job_id)
        if record is not None and record.callback_status in ("delivered", "failed"):
            return record
        time.sleep(0.2)
    record = stack.store.get(job_id)
    raise AssertionError(f"callback not final: {record}\n{stack.workers[0].log()[-3000:]}")


def test_finished_jobs_are_posted_signed_with_the_stored_view(
    make_stack: Callable[..., Stack], receiver: Receiver
) -> None:
    stack = callback_stack(make_stack)
    presigned = "https://media.example.org/ok.mp3?X-Amz-Signature=topsecret"
    ok = transcribe(presigned, MODEL, metadata={"user": 7}, callback_url=receiver.url("/ok?t=1"))
    failed = transcribe(
        "https://media.example.org/force-error/x.mp3", MODEL, callback_url=receiver.url("/err")
    )
    plain = transcribe("https://media.example.org/none.mp3", MODEL)  # no callback_url

    for handle, path, status in [(ok, "/ok", "completed"), (failed, "/err", "error")]:
        record = wait_callback(stack, handle.id)
        assert record.status.value == status
        assert record.callback_status == "delivered"
        assert record.callback_attempts == 1 and record.callback_error is None
        assert record.callback_delivered_at is not None
        assert record.stored_at is not None and record.callback_delivered_at >= record.stored_at
        (delivery,) = receiver.at(path)
        assert verify_signature(SECRET, delivery.body, delivery.headers)
        assert not verify_signature("another-secret-0123456789", delivery.body, delivery.headers)
        assert not verify_signature(SECRET, delivery.body + b" ", delivery.headers)
        assert delivery.headers[JOB_ID_HEADER] == handle.id
        assert delivery.headers["Content-Type"] == "application/json"
        body = json.loads(delivery.body)
        assert body == job_view(record)
        assert body["id"] == handle.id and body["status"] == status
        assert stack.emulator.api_key not in delivery.body.decode()
        assert stack.emulator.api_key not in json.dumps(delivery.headers)

    ok_body = json.loads(receiver.at("/ok")[0].body)
    assert ok_body["text"] == stack.emulator.expected_transcript(presigned)
    assert ok_body["metadata"] == {"user": 7}
    assert "topsecret" not in receiver.at("/ok")[0].body.decode()  # URL redacted
    assert ok_body["cost_usd"] > 0 and ok_body["billed_seconds"] > 0
    assert json.loads(receiver.at("/err")[0].body)["error"]
    # A job without a callback_url is stored without one, and nothing is posted for it.
    assert plain.wait(timeout=60).callback_status is None
    assert len(receiver.deliveries) == 2


def test_a_flaky_receiver_gets_the_same_body_until_it_answers_2xx(
    make_stack: Callable[..., Stack], receiver: Receiver
) -> None:
    stack = callback_stack(make_stack)
    receiver.script["/flaky"] = [500, 503, 200]
    handle = transcribe(
        "https://media.example.org/f.mp3", MODEL, callback_url=receiver.url("/flaky")
    )
    record = wait_callback(stack, handle.id)
    assert record.status is JobStatus.COMPLETED
    assert record.callback_status == "delivered" and record.callback_attempts == 3
    assert record.callback_error is None
    deliveries = receiver.at("/flaky")
    assert [d.status for d in deliveries] == [500, 503, 200]
    assert len({d.body for d in deliveries}) == 1  # identical bytes on every attempt
    assert all(verify_signature(SECRET, d.body, d.headers) for d in deliveries)
    gaps = [
        int(b.headers[TIMESTAMP_HEADER]) - int(a.headers[TIMESTAMP_HEADER])
        for a, b in itertools.pairwise(deliveries)
    ]
    assert all(gap >= 0 for gap in gaps) and sum(gaps) >= 1  # backed off, freshly signed


def test_a_receiver_that_never_answers_2xx_fails_the_callback_not_the_job(
    make_stack: Callable[..., Stack], receiver: Receiver
) -> None:
    stack = callback_stack(make_stack, STT_CALLBACK_MAX_ATTEMPTS="3")
    receiver.script["/down"] = [500]
    handle = transcribe(
        "https://media.example.org/d.mp3", MODEL, callback_url=receiver.url("/down?token=abc")
    )
    record = wait_callback(stack, handle.id)
    assert record.status is JobStatus.COMPLETED and record.text
    assert record.callback_status == "failed" and record.callback_attempts == 3
    assert record.callback_delivered_at is None
    assert "gave up after 3 attempts" in (record.callback_error or "")
    assert "HTTP 500" in (record.callback_error or "")
    assert "receiver is down" in (record.callback_error or "")
    assert "token=abc" not in (record.callback_error or "")  # the callback URL is redacted
    time.sleep(1)  # a 4th attempt would come 4-8 s later; none is even scheduled
    assert len(receiver.at("/down")) == 3
    assert stack.broker_messages() == 0


def test_redelivered_store_and_callback_messages_post_nothing_twice(
    make_stack: Callable[..., Stack], receiver: Receiver
) -> None:
    stack = callback_stack(make_stack)
    handle = transcribe("https://media.example.org/r.mp3", MODEL, callback_url=receiver.url("/r"))
    wait_callback(stack, handle.id)
    worker = stack.workers[0]
    sent = [
        store.delay(Outcome(handle.id, JobStatus.COMPLETED).to_message()),
        callback.delay(handle.id),
    ]
    for result, name in zip(sent, ["stt.store", "stt.callback"], strict=True):
        line = f"Task {name}[{result.id}] succeeded"
        wait_for(lambda line=line: line in worker.log(), 30, name)
    assert len(receiver.at("/r")) == 1
    record = stack.store.get(handle.id)
    assert record is not None and record.callback_attempts == 1


@pytest.mark.parametrize(
    "bad", ["", "ftp://host/hook", "file:///tmp/hook", "not a url", "http://", 42]
)
def test_bad_callback_urls_are_refused_naming_the_field(
    make_stack: Callable[..., Stack], bad: object
) -> None:
    stack = callback_stack(make_stack, start_worker=False)
    with pytest.raises(InvalidInput) as info:
        transcribe("https://a.example/x.mp3", MODEL, callback_url=bad)  # type: ignore[arg-type]
    assert info.value.field == "callback_url"
    assert stack.broker_messages() == 0 and stack.store.list_jobs(limit=None) == []


def test_a_callback_url_without_a_secret_is_refused_before_anything_is_stored(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(start_worker=False)
    with pytest.raises(ConfigurationError) as info:
        transcribe("https://a.example/x.mp3", MODEL, callback_url="https://hooks.example/stt")
    assert info.value.variable == "STT_CALLBACK_SECRET"
    assert stack.broker_messages() == 0 and stack.store.list_jobs(limit=None) == []


def test_cli_submit_callback_url_is_validated_and_stored(
    make_stack: Callable[..., Stack],
) -> None:
    stack = callback_stack(make_stack, start_worker=False)

    def submit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "workers.cli", "submit", "https://a.example/x.mp3", *args],
            env=stack.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    bad = submit("--callback-url", "ftp://hooks.example/stt")
    assert bad.returncode == 2 and "'callback_url'" in bad.stderr
    assert stack.store.list_jobs(limit=None) == [] and stack.broker_messages() == 0
    good = submit("--callback-url", "https://hooks.example/stt")
    assert good.returncode == 0, good.stderr
    (record,) = stack.store.list_jobs(limit=None)
    assert record.id == good.stdout.strip()
    assert record.callback_url == "https://hooks.example/stt"


def test_a_callback_lost_with_its_worker_and_the_broker_is_redriven_by_the_sweep(
    make_stack: Callable[..., Stack], receiver: Receiver
) -> None:
    stack = callback_stack(make_stack)
    receiver.holds["/lost"] = threading.Event()
    handle = transcribe(
        "https://media.example.org/lost-callback.mp3", MODEL, callback_url=receiver.url("/lost")
    )
    receiver.wait_for("/lost", 1)  # the worker is inside the POST, waiting for an answer
    stack.workers[0].kill()
    stack.redis.client().flushall()  # and whatever the broker held is gone too
    receiver.holds["/lost"].set()
    stack.start_worker()
    time.sleep(2)
    record = stack.store.get(handle.id)
    assert record is not None and record.status is JobStatus.COMPLETED
    assert (record.callback_status, record.callback_attempts) == ("pending", 1)
    assert len(receiver.at("/lost")) == 1, "nothing but the sweep should deliver it again"

    sweep.delay(grace=0)  # through the broker, as beat would send it
    record = wait_callback(stack, handle.id)
    assert (record.callback_status, record.callback_attempts) == ("delivered", 2)
    first, second = receiver.wait_for("/lost", 2)
    assert first.body == second.body == encode_body(job_view(record))
    assert verify_signature(SECRET, second.body, second.headers)
    time.sleep(1)
    sweep.delay(grace=0)  # a delivered callback is never re-driven
    time.sleep(2)
    assert len(receiver.at("/lost")) == 2
