"""A vendor that changes: models we do not list, and prices that move.

The emulator is taught a model our catalog has never heard of (as the vendor may add one
any day); ``transcribe()`` takes it, the answer's shape decides the normalization, and the
cost is "unpriced" (null) everywhere a user looks, until ``STT_PRICES_FILE`` prices it.
A model the vendor does not serve ends the job failed with the vendor's own message.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from tasks.jobs import transcribe
from tasks.models import JobStatus
from tests.fixtures.receiver import Receiver, receiver
from tests.fixtures.services import run_cli
from tests.fixtures.stack import Stack
from tests.integration.test_pipeline import wait_all

__all__ = ["receiver"]  # the fixture, imported for pytest

NEW_MODEL = "aai/universal-3"  # served by the vendor (emulator), listed nowhere in tasks/
SECRET = "test-callback-secret-0123456789abcdef"


def cli(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli({**stack.env, **env}, *args)


def test_a_model_the_vendor_does_not_serve_fails_with_the_vendors_message(stack: Stack) -> None:
    handle = transcribe("https://media.example.org/new.mp3", "openai/gpt-5-transcribe")
    (record,) = wait_all(stack, [handle.id], timeout=60)
    assert record.status is JobStatus.FAILED
    error = record.error or ""
    assert "model 'openai/gpt-5-transcribe' is not supported" in error, error
    assert "HTTP 400" in error and error.count("rejected") == 1, error
    assert record.submit_attempts == 1 and record.generation_id is None
    assert stack.emulator.stats()["by_status"]["create 400"] == 1  # asked once, not retried


def test_a_model_only_the_vendor_knows_completes_unpriced_everywhere(
    make_stack: Callable[..., Stack], receiver: Receiver
) -> None:
    stack = make_stack(STT_CALLBACK_SECRET=SECRET, STT_CALLBACK_ALLOW_NETWORKS="127.0.0.0/8")
    stack.emulator.configure(models={NEW_MODEL: "assemblyai"})
    url = stack.emulator.sample_url(6)
    handle = transcribe(url, NEW_MODEL, callback_url=receiver.url("/done"))
    (record,) = wait_all(stack, [handle.id], timeout=60)

    assert record.status is JobStatus.COMPLETED, record.error
    assert record.text == stack.emulator.expected_transcript(url)
    assert record.words and record.audio_seconds == 6.0  # read as AssemblyAI: ms -> s
    assert record.cost_usd is None  # unpriced, not free

    status = cli(stack, "status", handle.id)
    assert status.returncode == 0, status.stderr
    assert "cost_usd              unpriced" in status.stdout
    usage = cli(stack, "usage", "--csv")
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(usage.stdout))}
    assert rows[NEW_MODEL]["cost_usd"] == "" and rows[NEW_MODEL]["unpriced"] == "1"
    assert rows[NEW_MODEL]["audio_minutes"] == "0.100"
    table = cli(stack, "usage").stdout.splitlines()
    line = next(x for x in table if x.startswith(NEW_MODEL))
    assert line.split()[-2:] == ["unpriced", "1"], table
    (delivery,) = receiver.wait_for("/done", 1)
    body = json.loads(delivery.body)
    assert body["status"] == "completed" and body["cost_usd"] is None


def test_a_prices_file_prices_a_new_model_and_overrides_the_catalog(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(
        f'[models."{NEW_MODEL}"]\nper_minute = 0.5\n\n[models."aai/nano"]\nper_minute = 1.0\n'
    )
    stack = make_stack(STT_PRICES_FILE=str(prices))
    stack.emulator.configure(models={NEW_MODEL: "assemblyai"})
    new = transcribe(stack.emulator.sample_url(6), NEW_MODEL)
    nano = transcribe(stack.emulator.sample_url(3), "aai/nano")
    new_record, nano_record = wait_all(stack, [new.id, nano.id], timeout=60)
    assert new_record.cost_usd == 0.05  # 6 s at $0.5 per minute
    assert nano_record.cost_usd == 0.05  # 3 s at the file's $1 per minute, not the catalog's

    listing = cli(stack, "models", "--json")
    assert listing.returncode == 0, listing.stderr
    models = {m["id"]: m for m in json.loads(listing.stdout)}
    assert models[NEW_MODEL] == {
        "id": NEW_MODEL,
        "family": "assemblyai",
        "price": {
            "audio_input_per_mtok": 0.0,
            "text_input_per_mtok": 0.0,
            "output_per_mtok": 0.0,
            "per_minute": 0.5,
        },
        "source": str(prices.resolve()),
    }
    assert models["aai/best"]["source"] == "catalog"
    text = cli(stack, "models").stdout
    assert any(
        line.startswith("aai/nano") and "$1 per audio minute" in line and str(prices) in line
        for line in text.splitlines()
    ), text


def test_a_worker_refuses_to_start_on_a_bad_prices_file(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = make_stack(start_worker=False)
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."aai/nano"]\nper_minute = "cheap"\n')
    proc = cli(stack, "worker", STT_PRICES_FILE=str(prices))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"Error: STT_PRICES_FILE: {prices.resolve()}: model 'aai/nano': "
        "per_minute must be a number, got 'cheap'"
    ]
