"""Issue 12, cases 9 and 10: text from outside is kept without the key and shown inert.

Case 9: an API that echoes the Authorization header with JSON escapes
(``sk-live\\/AbC+def\\/123``) must not put the key into the job's error, the status CLI, the
web example's JSON or the callback body. Case 10: escape sequences and newlines in what the
API and a callback receiver send must not reach a terminal or forge a log line.
Both run a real worker against a small local API that answers exactly that.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

from tasks.jobs import transcribe
from tasks.models import JobStatus
from tests.fixtures.hostile import HostileServer, Request, hostile, json_reply
from tests.fixtures.receiver import Receiver, receiver
from tests.fixtures.services import run_cli, wait_for
from tests.fixtures.stack import Stack
from tests.fixtures.webapps import add_example_path

__all__ = ["hostile", "receiver"]  # the fixtures, imported for pytest

MODEL = "aai/slam-1"
SECRET = "test-callback-secret-0123456789abcdef"
KEY = "sk-live/AbC+def/123"
ESCAPED = KEY.replace("/", "\\/")  # how a JSON encoder may write it
UNICODE_ESCAPED = KEY.replace("/", "\\u002f")


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(stack.env, *args)


def _wait_final_callback(stack: Stack, job_id: str) -> None:
    def done() -> bool:
        record = stack.store.get(job_id)
        return record is not None and record.callback_status in ("delivered", "failed")

    wait_for(done, 90, f"job {job_id}'s callback to end")


def _echoing_api(api: HostileServer) -> None:
    def create(handler: BaseHTTPRequestHandler, request: Request) -> None:
        url = json.loads(request.body)["url"]
        if "echo-400" in url:
            body = (
                '{"message":"Authorization: Bearer ' + ESCAPED + ' is not valid",'
                '"requestId":"req-' + ESCAPED + '"}'
            )
            json_reply(400, body)(handler, request)
        else:
            json_reply(200, {"generation_id": "gen-echo"})(handler, request)

    poll = (
        '{"generation_id":"gen-echo","status":"error","error":{"name":"Unauthorized",'
        '"message":"token ' + UNICODE_ESCAPED + " (" + ESCAPED + ') expired"}}'
    )
    api.route("POST", "/v1/stt/create", create)
    api.route("GET", "/v1/stt/gen-echo", json_reply(200, poll))


def test_an_api_echoing_the_key_json_escaped_leaves_it_nowhere(
    make_stack: Callable[..., Stack],
    hostile: Callable[[], HostileServer],
    receiver: Receiver,
) -> None:
    api = hostile()
    _echoing_api(api)
    stack = make_stack(
        AIML_API_BASE=api.url,
        AIML_API_KEY=KEY,
        STT_CALLBACK_SECRET=SECRET,
        STT_CALLBACK_ALLOW_NETWORKS="127.0.0.0/8",
    )
    rejected = transcribe(
        "https://media.example.org/echo-400.mp3", MODEL, callback_url=receiver.url("/r")
    )
    errored = transcribe(
        "https://media.example.org/echo-poll.mp3", MODEL, callback_url=receiver.url("/e")
    )
    records = [rejected.wait(timeout=60), errored.wait(timeout=60)]
    assert [r.status for r in records] == [JobStatus.FAILED, JobStatus.ERROR]
    for record in records:
        _wait_final_callback(stack, record.id)
    assert "is not valid" in (records[0].error or "")  # the message is kept, the key is not
    assert "expired" in (records[1].error or "")

    add_example_path("flask_app")
    from stt_flask import create_app

    web = create_app({"TESTING": True}).test_client()
    shown = {
        "rows": repr([stack.store.get(r.id) for r in records]),
        "status CLI": "".join(cli(stack, "status", r.id).stdout for r in records),
        "web example JSON": "".join(web.get(f"/jobs/{r.id}").get_data(True) for r in records),
        "callback bodies": "".join(d.body.decode() for d in receiver.deliveries),
        "worker log": stack.workers[0].log(),
    }
    assert len(receiver.deliveries) == 2
    assert all("***" in shown[name] for name in ("rows", "status CLI", "callback bodies"))
    for name, text in shown.items():
        for form in (KEY, ESCAPED, UNICODE_ESCAPED, "AbC+def"):
            assert form not in text, (name, form)


FORGED = "[2026-12-01 00:00:00,000: INFO/MainProcess]"
ESC = "\x1b"


def _forging_api(api: HostileServer) -> str:
    generation_id = f"gen-1\n{FORGED} FORGED-ID"
    poll = {
        "generation_id": generation_id,
        "status": "error",
        "error": f"{ESC}[2J{ESC}[Hboom\r\n{FORGED} FORGED-ERROR \u202e",
    }
    api.route("POST", "/v1/stt/create", json_reply(200, {"generation_id": generation_id}))
    api.route("GET", "/v1/stt/", json_reply(200, poll))
    return generation_id


def test_escape_sequences_and_newlines_from_outside_reach_no_terminal_and_forge_no_log_line(
    make_stack: Callable[..., Stack],
    hostile: Callable[[], HostileServer],
) -> None:
    api = hostile()
    generation_id = _forging_api(api)
    hooks = hostile()
    hooks.route(
        "POST", "/cb", json_reply(500, f"down\n{FORGED} FORGED-CALLBACK {ESC}[2J\r".encode())
    )
    stack = make_stack(
        AIML_API_BASE=api.url,
        STT_CALLBACK_SECRET=SECRET,
        STT_CALLBACK_ALLOW_NETWORKS="127.0.0.0/8",
        STT_CALLBACK_MAX_ATTEMPTS="1",
    )
    handle = transcribe(
        "https://media.example.org/forge.mp3", MODEL, callback_url=f"{hooks.url}/cb"
    )
    record = handle.wait(timeout=60)
    _wait_final_callback(stack, handle.id)
    record = stack.store.get(handle.id)
    assert record is not None and record.status is JobStatus.ERROR
    assert record.generation_id == generation_id  # stored as the API gave it
    assert record.callback_status == "failed" and "FORGED-CALLBACK" in (record.callback_error or "")
    time.sleep(0.5)  # the worker's last log lines (callback failure) are flushed

    outputs = {
        "worker log": stack.workers[0].log(),
        "status": cli(stack, "status", handle.id).stdout,
        "list": cli(stack, "list").stdout,
        "result --format json": cli(stack, "result", handle.id, "--format", "json").stdout,
        "result (no transcript)": cli(stack, "result", handle.id).stderr,
    }
    assert "FORGED-ID" in outputs["worker log"]  # the id was logged ...
    assert "FORGED-CALLBACK" in outputs["worker log"]
    assert "FORGED-ERROR" in outputs["status"]
    for name, text in outputs.items():
        assert ESC not in text and "\r" not in text and "\u202e" not in text, name
        forged = [line for line in text.splitlines() if line.startswith(FORGED)]
        assert not forged, (name, forged)  # ... but never as a line of its own
