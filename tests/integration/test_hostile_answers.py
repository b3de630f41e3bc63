"""Answers the store cannot hold, or that cost too much to read, end their job once
(issue 12, cases 1 and 2), on SQLite and PostgreSQL.

The emulator answers each job's polls with bytes the test registered
(``force-scripted-<name>``), so every hostile answer is exactly what a broken server sends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.answers import MAX_JSON_DEPTH
from tasks.jobs import transcribe
from tasks.models import JobStatus, Transcript, Usage
from tasks.steps import finish_completed
from tasks.store import Store, utcnow
from tasks.validation import validate_request
from tests.fixtures.stack import Stack
from tests.integration.test_pipeline import wait_all

MODEL = "openai/gpt-4o-mini-transcribe"


def scripted(stack: Stack, name: str, body: str | bytes, *, status: int = 201) -> str:
    """Register ``body`` as the poll answer of a job; the audio URL that asks for it."""
    stack.emulator.script_answer(name, body, status=status)
    return f"https://media.example.org/force-scripted-{name}/a.mp3"


def gets(stack: Stack, generation_id: str | None) -> int:
    return len(stack.emulator.requests_log(f"/v1/stt/{generation_id}"))


def envelope(result: str) -> str:
    """A completed legacy envelope around ``result``, which is JSON *text* (NaN allowed)."""
    return '{"generation_id": "g-1", "status": "completed", "error": null, "result": ' + result


def test_values_the_store_cannot_hold_are_cleaned_and_the_job_completes_once(
    make_stack: Callable[..., Stack], db: str, reliability: Callable[..., Any]
) -> None:
    stack = make_stack(db=db, STT_POLL_DEADLINE="30")
    usage = {
        "input_tokens": "NaN",
        "output_tokens": "1e999",
        "total_tokens": str(10**20),
        "input_token_details": {"audio_tokens": "-5", "text_tokens": "3"},
    }
    usage_text = "{" + ", ".join(
        f'"{k}": {v}' if not isinstance(v, dict) else f'"{k}": ' + _object(v)
        for k, v in usage.items()
    )
    bad_usage = envelope('{"text": "hello\\u0000 world", "usage": ' + usage_text + "}}}")
    # whisper's verbose form: a word time of Infinity, a negative duration.
    bad_times = envelope(
        '{"text": "two words", "duration": -3, "words": [{"word": "two", "start": 0, '
        '"end": Infinity}, {"word": "wo\\u0000rds", "start": 0.5, "end": 1.0}], '
        '"usage": {"type": "duration", "seconds": 1e400}}}'
    )
    # An error answer whose text carries a NUL (PostgreSQL's text columns refuse it).
    bad_error = json.dumps({"message": "Bad\u0000 request", "statusCode": 400})
    urls = {
        "usage": scripted(stack, "usage", bad_usage),
        "times": scripted(stack, "times", bad_times),
        "error": scripted(stack, "error", bad_error, status=400),
    }
    handles = {kind: transcribe(url, MODEL) for kind, url in urls.items()}
    records = {r.id: r for r in wait_all(stack, [h.id for h in handles.values()], timeout=60)}

    usage_job = records[handles["usage"].id]
    assert usage_job.status is JobStatus.COMPLETED, usage_job.error
    assert usage_job.text == "hello world"
    assert usage_job.input_tokens is None and usage_job.output_tokens is None
    assert usage_job.total_tokens is None and usage_job.audio_tokens is None
    assert usage_job.text_tokens == 3
    assert usage_job.cost_usd is None or usage_job.cost_usd >= 0
    assert usage_job.raw_result is not None
    assert usage_job.raw_result["usage"]["input_tokens"] is None  # NaN kept as null

    times_job = records[handles["times"].id]
    assert times_job.status is JobStatus.COMPLETED, times_job.error
    assert times_job.audio_seconds is None and times_job.billed_seconds is None
    assert times_job.words == [{"text": "words", "start": 0.5, "end": 1.0}]

    error_job = records[handles["error"].id]
    assert error_job.status is JobStatus.FAILED
    assert "Bad request" in (error_job.error or "")

    for record in records.values():
        assert gets(stack, record.generation_id) == 1, "polled again after the final answer"
    log = stack.workers[0].log()
    assert "the answer held 2 non-finite numbers (NaN, 1e999): read as null" in log
    assert "usage audio_tokens = -5 is not a number in [0, 2.14748e+09]" in log
    assert "usage total_tokens = 100000000000000000000 is not a number" in log
    assert "Traceback" not in log
    reliability(
        f"completed results with NaN/1e999/10**20/negative usage, NUL in text ({db[:10]})",
        jobs_in=3,
        jobs_stored=3,
        api_duplicates=0,
        recover_s=None,
    )


def _object(values: dict[str, str]) -> str:
    return "{" + ", ".join(f'"{k}": {v}' for k, v in values.items()) + "}"


def test_a_transcript_the_database_refuses_ends_the_job_failed_with_the_reason(
    tmp_path: Path, db: str
) -> None:
    """The last line of defence behind normalize: a value the database refuses (a count
    past 64 bits, NUL in text) fails the job with the database's reason, no retry loop."""
    store = Store(f"sqlite:///{tmp_path / 'jobs.sqlite3'}" if db == "sqlite" else db)
    try:
        refused = {
            "count": Transcript(text="ok", usage=Usage(input_tokens=2**70)),
            "nul": Transcript(text="a\x00b", usage=Usage(input_tokens=2**40)),
        }
        for kind, transcript in refused.items():
            record, _ = store.create_job(validate_request(f"https://x.org/{kind}.mp3", MODEL))
            stored = finish_completed(store, record, transcript, now=utcnow())
            assert stored is not None
            if db == "sqlite" and kind == "nul":  # SQLite keeps NUL and 64-bit counts
                assert stored.status is JobStatus.COMPLETED
                continue
            assert stored.status is JobStatus.FAILED, kind
            assert (stored.error or "").startswith("the result could not be stored: "), kind
            assert "x.org" not in (stored.error or "")  # no statement, no parameters
    finally:
        store.close()


def _peak_rss(pid: int) -> int:
    """The process's peak resident set size (VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_deep_or_huge_answers_fail_after_one_poll_within_bounded_memory(
    make_stack: Callable[..., Stack], db: str, reliability: Callable[..., Any]
) -> None:
    stack = make_stack(db=db, STT_POLL_DEADLINE="60")
    worker = stack.workers[0]
    assert worker.process is not None
    deep_result = "[" * (MAX_JSON_DEPTH + 5) + "]" * (MAX_JSON_DEPTH + 5)
    urls = {
        "brackets": scripted(stack, "brackets", "[" * 100_000),
        "deep-result": scripted(stack, "deep", envelope('{"text": "x", "n": ' + deep_result)),
    }
    # 16 MiB of [{},{},...]: under the byte cap, ~5.6 million objects once decoded.
    size = stack.emulator.script_answer(
        "many", repeat={"prefix": "[", "unit": "{},", "count": 5_592_400, "suffix": "{}]"}
    )
    assert 16_000_000 < size <= 16 * 1024 * 1024
    urls["many"] = "https://media.example.org/force-scripted-many/a.mp3"
    before = _peak_rss(worker.process.pid)
    handles = {kind: transcribe(url, MODEL) for kind, url in urls.items()}
    records = {r.id: r for r in wait_all(stack, [h.id for h in handles.values()], timeout=90)}
    grown = _peak_rss(worker.process.pid) - before

    expected = {
        "brackets": f"nests deeper than {MAX_JSON_DEPTH} levels",
        "deep-result": f"nests deeper than {MAX_JSON_DEPTH} levels",
        "many": "more than 1,000,000 JSON values",
    }
    for kind, handle in handles.items():
        record = records[handle.id]
        assert record.status is JobStatus.FAILED, (kind, record.status, record.error)
        assert expected[kind] in (record.error or ""), (kind, record.error)
        assert gets(stack, record.generation_id) == 1, f"{kind}: polled more than once"
    # Reading the 16 MiB answer whole and decoding it took ~400 MB; refusing it unread
    # costs the body and a few copies of its skeleton.
    assert grown < 150 * 1024 * 1024, f"worker peak RSS grew {grown / 2**20:.0f} MiB"
    assert "RecursionError" not in worker.log()
    reliability(
        f"answers nested 100,000 deep / 16 MiB of [{{}},...] ({db[:10]})",
        jobs_in=3,
        jobs_stored=3,
        api_duplicates=0,
        recover_s=None,
        worker_peak_rss_growth_mib=round(grown / 2**20),
    )
