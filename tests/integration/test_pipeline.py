"""End to end: transcribe() -> real Redis -> real worker process -> emulator -> store."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from tasks.catalog import MODELS, Family
from tasks.jobs import transcribe
from tasks.models import JobStatus
from tasks.store import JobRecord
from tests.fixtures.stack import Stack

FAMILY_MODELS = {
    Family.OPENAI: "openai/gpt-4o-transcribe",
    Family.DEEPGRAM: "#g1_whisper-small",
    Family.ASSEMBLYAI: "aai/universal",
}


def wait_all(stack: Stack, ids: list[str], timeout: float = 120) -> list[JobRecord]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = stack.store.get_many(ids)
        if len(records) == len(ids) and all(r.done for r in records):
            return sorted(records, key=lambda r: ids.index(r.id))
        time.sleep(0.3)
    records = stack.store.get_many(ids)
    stuck = [(r.id, r.status.value, r.server_status) for r in records if not r.done]
    raise AssertionError(
        f"{len(stuck)} jobs not final: {stuck[:5]}\n{stack.workers[0].log()[-3000:]}"
    )


def test_sixty_jobs_across_three_families_stored_once_with_text_and_usage(stack: Stack) -> None:
    jobs = []
    for i in range(60):
        family = list(FAMILY_MODELS)[i % 3]
        url = (
            stack.emulator.sample_url(2 + i % 5)
            if i % 2
            else f"https://media.example.org/batch/episode-{i}.mp3?X-Amz-Signature=s{i}"
        )
        jobs.append((transcribe(url, FAMILY_MODELS[family]).id, url, family))
    records = wait_all(stack, [j for j, _, _ in jobs])

    assert len(stack.store.list_jobs(limit=None)) == 60
    creates = stack.emulator.create_counts()
    jobs_per_url = Counter(url for _, url, _ in jobs)
    for record, (_, url, family) in zip(records, jobs, strict=True):
        assert record.status is JobStatus.COMPLETED, (record.status, record.error)
        assert record.text == stack.emulator.expected_transcript(url)
        assert creates[url] == jobs_per_url[url]  # one API job per job, never two
        assert record.polls >= 1 and record.stored_at is not None
        assert record.enqueued_at <= record.submitted_at <= record.finished_at <= record.stored_at  # type: ignore[operator]
        assert record.cost_usd is not None and record.cost_usd > 0
        if family is Family.OPENAI:
            assert record.audio_tokens and record.output_tokens and record.total_tokens
            assert record.total_tokens == record.input_tokens + record.output_tokens  # type: ignore[operator]
        else:
            assert record.billed_seconds and record.billed_seconds > 0
            assert record.words, "word timings kept for Deepgram and AssemblyAI"
    assert {MODELS[r.model].family for r in records} == set(FAMILY_MODELS)


def test_server_error_rejections_and_deadline_are_stored_with_a_message(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(STT_POLL_DEADLINE="4")
    emu = stack.emulator
    error = transcribe("https://media.example.org/force-error/a.mp3", "aai/slam-1")
    rejected = transcribe("https://media.example.org/force-http-400/b.mp3", "aai/slam-1")
    unauthorized = transcribe("https://media.example.org/force-http-401/c.mp3", "aai/slam-1")
    ok = transcribe("https://media.example.org/fine.mp3", "#g1_nova-2-general")
    records = {r.id: r for r in wait_all(stack, [error.id, rejected.id, unauthorized.id, ok.id])}
    assert records[error.id].status is JobStatus.ERROR and records[error.id].error
    assert records[rejected.id].status is JobStatus.FAILED
    assert "Body validation error" in (records[rejected.id].error or "")
    assert records[unauthorized.id].status is JobStatus.FAILED
    assert "401" in (records[unauthorized.id].error or "")
    assert records[ok.id].status is JobStatus.COMPLETED  # the worker kept going

    emu.configure(fixed=120.0)
    slow = transcribe("https://media.example.org/slow.mp3", "aai/slam-1")
    (record,) = wait_all(stack, [slow.id], timeout=30)
    assert record.status is JobStatus.TIMEOUT
    assert "deadline" in (record.error or "")
    assert record.polls >= 2


def test_unknown_pending_words_and_v2_envelope_are_polled_to_completion(stack: Stack) -> None:
    stack.emulator.configure(dialect="v2")
    handle = transcribe("https://media.example.org/v2.mp3", "openai/gpt-4o-mini-transcribe")
    record = handle.wait(timeout=60)
    assert record.status is JobStatus.COMPLETED
    assert record.text == stack.emulator.expected_transcript("https://media.example.org/v2.mp3")


def test_transient_submit_errors_retry_then_give_up_with_a_message(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(STT_SUBMIT_MAX_RETRIES="2")
    flaky = "https://media.example.org/force-http-503x2/flaky.mp3"
    down = "https://media.example.org/force-http-503/down.mp3"
    first, second = transcribe(flaky, "aai/slam-1"), transcribe(down, "aai/slam-1")
    records = {r.id: r for r in wait_all(stack, [first.id, second.id], timeout=60)}
    recovered, gave_up = records[first.id], records[second.id]
    assert recovered.status is JobStatus.COMPLETED
    assert recovered.submit_attempts == 3  # two 503s, then the create that worked
    assert stack.emulator.create_counts()[flaky] == 1
    assert gave_up.status is JobStatus.FAILED
    assert "gave up after 3 attempts" in (gave_up.error or "")
    assert "503" in (gave_up.error or "")


def test_a_job_polled_many_times_runs_store_once(stack: Stack) -> None:
    """A pending poll re-schedules itself without raising (tasks/reschedule.py): the chain
    rides on the re-published message and continues only when the job is done."""
    stack.emulator.configure(fixed=3.0)  # pending for several polls at the tests' 0.2-1 s
    handle = transcribe("https://media.example.org/many-polls/a.mp3", "aai/slam-1")
    (record,) = wait_all(stack, [handle.id])
    assert record.status is JobStatus.COMPLETED
    assert record.polls >= 3
    log = stack.workers[0].log()
    assert log.count(f"job {handle.id} stored as") == 1
    assert "stt.store" in log and "expects an outcome" not in log
    assert record.generation_id is not None
    gets = stack.emulator.requests_log(f"/v1/stt/{record.generation_id}")
    assert len(gets) == record.polls
