"""Issue 12, case 8: every API call and every callback has a *total* deadline.

requests' ``timeout=(connect, read)`` bounds each wait for the next byte, so a server that
sends one byte every 0.5 s held a poll for 83 s with ``STT_READ_TIMEOUT=1``. Here the
servers trickle for real, over sockets, for as long as the client stays; each test shows
the client hung up, the job or callback still reached a final state, and a worker with 16
such receivers went on with its other jobs.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from tasks.client import STTClient
from tasks.errors import RequestTimeout, TransientError
from tasks.jobs import transcribe
from tasks.models import JobStatus
from tests.fixtures.hostile import HostileServer, Request, hostile, json_reply, trickle
from tests.fixtures.services import wait_for
from tests.fixtures.stack import Stack

__all__ = ["hostile"]  # the fixture, imported for pytest

MODEL = "aai/slam-1"
SECRET = "test-callback-secret-0123456789abcdef"


def _in_thread(call: Callable[[], Any], bound: float) -> BaseException | None:
    """Run ``call``; the exception it raised. Fails if it is still running after ``bound``
    seconds (the trickle never stops, so only a deadline can end it)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # the test inspects it
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(bound)
    assert outcome, f"the call was still running after {bound} s: no total deadline"
    return outcome[0]


@pytest.mark.parametrize("headers_too", [True, False], ids=["status-line", "body"])
def test_the_client_gives_up_on_a_trickling_api_at_its_total_deadline(
    hostile: Callable[[], HostileServer], headers_too: bool, reliability: Callable[..., Any]
) -> None:
    api = hostile()
    api.route("GET", "/v1/stt/", trickle(headers_too=headers_too))
    api.route("POST", "/v1/stt/create", trickle(headers_too=headers_too))
    with STTClient(
        "sk-test-key", api.url, connect_timeout=1, read_timeout=1, total_timeout=1.5
    ) as client:
        started = time.monotonic()
        error = _in_thread(lambda: client.get("g-1"), bound=30)
        held = time.monotonic() - started
        assert isinstance(error, RequestTimeout) and isinstance(error, TransientError)
        assert error.seconds == 1.5
        assert error.message == (
            "GET /v1/stt/g-1: no complete answer within the 1.5 s total deadline "
            "(STT_REQUEST_TIMEOUT)"
        )
        create = _in_thread(lambda: client.create(model=MODEL, url="https://a.example/x"), 30)
        assert isinstance(create, RequestTimeout)
        # The connection was closed, not left to trickle on: the server saw the hang-up.
        wait_for(lambda: all(r.ended for r in api.seen), 10, "the server to see the hang-up")
    reliability(
        f"API trickling its {'status line' if headers_too else 'body'} (1 byte / 0.5 s)",
        jobs_in=0,
        jobs_stored=0,
        api_duplicates=0,
        recover_s=None,
        held_s=round(held, 2),
        deadline_s=1.5,
    )


def _api_for_stack(api: HostileServer) -> None:
    """Creates answer at once (except for URLs saying ``slow-create``, whose create
    trickles); every poll trickles its body."""
    slow = trickle(headers_too=True)

    def create(handler: BaseHTTPRequestHandler, request: Request) -> None:
        url = json.loads(request.body)["url"]
        if "slow-create" in url:
            slow(handler, request)
        else:
            json_reply(200, {"generation_id": f"gen-{url.rsplit('/', 1)[-1]}"})(handler, request)

    api.route("POST", "/v1/stt/create", create)
    api.route("GET", "/v1/stt/", trickle(headers_too=False))


def test_a_trickling_api_ends_jobs_by_their_deadlines_on_a_real_worker(
    make_stack: Callable[..., Stack],
    hostile: Callable[[], HostileServer],
    reliability: Callable[..., Any],
) -> None:
    api = hostile()
    _api_for_stack(api)
    make_stack(
        AIML_API_BASE=api.url,
        STT_CONNECT_TIMEOUT="1",
        STT_READ_TIMEOUT="1",  # total deadline: 1 + 1 = 2 s per request
        STT_SUBMIT_MAX_RETRIES="1",
        STT_POLL_DEADLINE="6",
    )
    started = time.monotonic()
    polled = transcribe("https://media.example.org/polled.mp3", MODEL)
    created = transcribe("https://media.example.org/slow-create.mp3", MODEL)
    records = [polled.wait(timeout=120), created.wait(timeout=120)]
    elapsed = time.monotonic() - started

    assert records[0].status is JobStatus.TIMEOUT, records[0]
    assert records[0].polls >= 1
    assert records[1].status is JobStatus.FAILED, records[1]
    assert "submit gave up after 2 attempts" in (records[1].error or "")
    assert "2 s total deadline" in (records[1].error or "")
    wait_for(lambda: all(r.ended for r in api.seen), 10, "every trickle to be hung up on")
    holds = [r.ended - r.started for r in api.seen if r.ended]
    reliability(
        "API trickling creates and polls, real worker",
        jobs_in=2,
        jobs_stored=2,
        api_duplicates=0,
        recover_s=elapsed,
        requests=len(api.seen),
        longest_request_held_s=round(max(holds), 2),
    )


def test_sixteen_trickling_callback_receivers_do_not_stall_the_worker(
    make_stack: Callable[..., Stack],
    hostile: Callable[[], HostileServer],
    reliability: Callable[..., Any],
) -> None:
    receivers = hostile()
    receivers.route("POST", "/slow/", trickle(headers_too=True))
    stack = make_stack(
        start_worker=False,
        STT_CALLBACK_SECRET=SECRET,
        STT_CALLBACK_ALLOW_NETWORKS="127.0.0.0/8",
        STT_CONNECT_TIMEOUT="1",
        STT_CALLBACK_TIMEOUT="1",  # the total per attempt
        STT_CALLBACK_MAX_ATTEMPTS="2",
    )
    stack.start_worker("--concurrency", "8", "--pool", "threads", "--processes", "1")
    started = time.monotonic()
    slow = [
        transcribe(
            f"https://media.example.org/cb-{i}.mp3",
            MODEL,
            callback_url=f"{receivers.url}/slow/{i}",
        )
        for i in range(16)
    ]
    # Enqueued after the 16: they finish only if the slow receivers give their slots back.
    plain = [transcribe(f"https://media.example.org/plain-{i}.mp3", MODEL) for i in range(8)]
    finished = [h.wait(timeout=120) for h in plain]
    assert all(r.status is JobStatus.COMPLETED for r in finished)

    def callbacks_final() -> bool:
        rows = [stack.store.get(h.id) for h in slow]
        return all(r is not None and r.callback_status in ("delivered", "failed") for r in rows)

    wait_for(callbacks_final, 120, "every callback to end")
    elapsed = time.monotonic() - started
    for handle in slow:
        record = stack.store.get(handle.id)
        assert record is not None and record.status is JobStatus.COMPLETED
        assert (record.callback_status, record.callback_attempts) == ("failed", 2)
        assert "no answer within 1 s (total)" in (record.callback_error or ""), record
    assert len(receivers.requests("POST", "/slow/")) == 32
    wait_for(lambda: all(r.ended for r in receivers.seen), 10, "every POST to be hung up on")
    holds = [r.ended - r.started for r in receivers.seen if r.ended]
    reliability(
        "16 callback receivers trickling 1 byte / 0.5 s, 8 worker threads",
        jobs_in=24,
        jobs_stored=24,
        api_duplicates=0,
        recover_s=elapsed,
        callback_attempts=32,
        longest_attempt_held_s=round(max(holds), 2),
    )
