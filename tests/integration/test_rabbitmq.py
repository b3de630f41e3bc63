"""RabbitMQ as the broker (docs/operations.md): a real worker on amqp:// runs jobs to the store.

Uses the machine's RabbitMQ (127.0.0.1:5672, guest/guest; STT_TEST_AMQP_URL overrides) in
a private virtual host made for this test, so parallel runs never share a queue.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest

from tasks.jobs import transcribe
from tasks.models import JobStatus
from tests.fixtures.stack import Stack

AMQP_HOST = os.environ.get("STT_TEST_AMQP_HOST", "guest:guest@127.0.0.1:5672")


def _rabbitmqctl(*args: str) -> None:
    binary = shutil.which("rabbitmqctl")
    if binary is None:
        pytest.fail("rabbitmqctl is not installed: this test needs the machine's RabbitMQ")
    subprocess.run([binary, *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def amqp_url() -> Iterator[str]:
    vhost = f"stt-test-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://{AMQP_HOST}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


def test_a_worker_on_rabbitmq_runs_jobs_to_the_store(
    make_stack: Callable[..., Stack], amqp_url: str
) -> None:
    stack = make_stack(STT_BROKER_URL=amqp_url)
    assert stack.env["STT_BROKER_URL"].startswith("amqp://")
    urls = [stack.emulator.sample_url(2), "https://media.example.org/rabbit/a.mp3"]
    handles = [transcribe(url, "#g1_nova-2-general") for url in urls]
    records = [h.wait(timeout=60) for h in handles]
    assert [r.status for r in records] == [JobStatus.COMPLETED] * 2
    assert [r.text for r in records] == [stack.emulator.expected_transcript(u) for u in urls]
    assert all(r.polls >= 1 for r in records)  # countdown retries work on amqp too
    assert "amqp://guest:**@127.0.0.1:5672/" in stack.workers[0].log()
