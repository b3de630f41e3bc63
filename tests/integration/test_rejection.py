"""Invalid input is refused before the broker or the store sees anything."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tasks.errors import InvalidInput
from tasks.jobs import transcribe
from tests.fixtures.services import ROOT
from tests.fixtures.stack import Stack

BAD_CALLS = [
    ({"url": "file:///etc/passwd"}, "url"),
    ({"url": "ftp://host/a.mp3"}, "url"),
    ({"url": ""}, "url"),
    ({"model": "openai/whisper 9"}, "model"),  # malformed; unknown ids are the API's call
    ({"temperature": -1}, "temperature"),
    ({"temperature": 2}, "temperature"),
    ({"temperature": "abc"}, "temperature"),
    ({"metadata": {"blob": "x" * 100_000}}, "metadata"),
    # Issue 6's matrix, beyond the cases above: non-URLs, oversize text, wrong types.
    ({"url": "not a url"}, "url"),
    ({"url": "https://"}, "url"),
    ({"url": "   "}, "url"),
    ({"url": 123}, "url"),
    ({"url": None}, "url"),
    ({"model": ""}, "model"),
    ({"model": None}, "model"),
    ({"temperature": float("nan")}, "temperature"),
    ({"temperature": True}, "temperature"),
    ({"prompt": "p" * 4001}, "prompt"),
    ({"prompt": 42}, "prompt"),
    ({"language": 5}, "language"),
    ({"language": "english please"}, "language"),
    ({"metadata": "key=value"}, "metadata"),
    ({"metadata": ["a", "b"]}, "metadata"),
    ({"metadata": {1: "non-string key"}}, "metadata"),
    ({"metadata": {"when": object()}}, "metadata"),
    ({"idempotency_key": 7}, "idempotency_key"),
    ({"idempotency_key": "k" * 201}, "idempotency_key"),
    ({"callback_url": "ftp://hooks.example/x"}, "callback_url"),
]


@pytest.mark.parametrize(("override", "field"), BAD_CALLS)
def test_transcribe_rejects_and_enqueues_nothing(
    make_stack: object, override: dict[str, object], field: str
) -> None:
    stack: Stack = make_stack(start_worker=False)  # type: ignore[operator]
    kwargs: dict[str, object] = {"url": "https://a.example/x.mp3", **override}
    with pytest.raises(InvalidInput) as info:
        transcribe(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field and field in str(info.value)
    assert stack.broker_messages() == 0
    assert stack.redis.client().dbsize() == 0
    assert stack.store.list_jobs(limit=None) == []


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["ftp://host/a.mp3"], "url"),
        (["https://a.example/ok.mp3", "file:///tmp/x.wav"], "url"),
        (["https://a.example/ok.mp3", "--model", "nope model"], "model"),
        (["https://a.example/ok.mp3", "--temperature", "abc"], "temperature"),
        (["https://a.example/ok.mp3", "--temperature", "2"], "temperature"),
        ([""], "url"),
        (["not-a-url"], "url"),
        (["https://a.example/ok.mp3", "--temperature", "-1"], "temperature"),
        (["https://a.example/ok.mp3", "--prompt", "p" * 4001], "prompt"),
        (["https://a.example/ok.mp3", "--language", "english please"], "language"),
    ],
)
def test_cli_submit_rejects_and_enqueues_nothing(
    make_stack: object, args: list[str], field: str
) -> None:
    stack: Stack = make_stack(start_worker=False)  # type: ignore[operator]
    proc = subprocess.run(
        [sys.executable, "-m", "workers.cli", "submit", *args],
        env=stack.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"Invalid value for '{field}': " in proc.stderr
    assert f"'{field}': {field}:" not in proc.stderr  # named once, not twice
    assert stack.broker_messages() == 0
    assert stack.store.list_jobs(limit=None) == []
