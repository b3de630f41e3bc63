"""Malformed answers end their job as failed, with a clear error, after one poll; the
worker keeps serving the good jobs running alongside. A status word never seen before is
not malformed: the job is polled as pending until its deadline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks.jobs import transcribe
from tasks.models import JobStatus
from tests.fixtures.stack import Stack
from tests.integration.test_pipeline import wait_all

BROKEN = {
    "not-json": "malformed JSON in the answer",
    "no-status": "malformed answer: missing or non-string status",
    "unknown-shape": "unreadable result: unknown result shape",
    "huge": "answer larger than 16 MiB",
}


def test_malformed_answers_fail_their_job_and_the_worker_goes_on(
    make_stack: Callable[..., Stack], reliability: Callable[..., Any]
) -> None:
    stack = make_stack(STT_POLL_DEADLINE="5")
    emu = stack.emulator
    broken = {
        kind: transcribe(
            f"https://media.example.org/force-answer-{kind}/a.mp3", "openai/gpt-4o-mini-transcribe"
        )
        for kind in BROKEN
    }
    unknown = transcribe("https://media.example.org/force-status-paused/b.mp3", "aai/slam-1")
    good_urls = [f"https://media.example.org/good/{i}.mp3" for i in range(12)]
    good = [transcribe(url, "#g1_nova-2-general") for url in good_urls]
    ids = [h.id for h in [*broken.values(), unknown, *good]]
    records = {r.id: r for r in wait_all(stack, ids, timeout=90)}

    for kind, handle in broken.items():
        record = records[handle.id]
        assert record.status is JobStatus.FAILED, (kind, record.status, record.error)
        assert BROKEN[kind] in (record.error or ""), (kind, record.error)
        polls = emu.requests_log(f"/v1/stt/{record.generation_id}")
        finals = [p for p in polls if p["done_ts"] >= emu.job(record.generation_id)["finished_ts"]]
        assert len(finals) == 1, f"{kind}: polled again after the broken answer"

    paused = records[unknown.id]
    assert paused.status is JobStatus.TIMEOUT, (paused.status, paused.error)
    assert "deadline" in (paused.error or "") and paused.server_status == "paused"
    assert paused.polls >= 3
    assert "unknown server status 'paused', treated as pending" in stack.workers[0].log()

    for handle, url in zip(good, good_urls, strict=True):
        assert records[handle.id].status is JobStatus.COMPLETED
        assert records[handle.id].text == emu.expected_transcript(url)
    reliability(
        "malformed answers (not JSON, no status, unknown shape, 17 MiB) + unknown status",
        jobs_in=len(ids),
        jobs_stored=len(records),
        api_duplicates=0,
        recover_s=None,
        failed_with_message=len(BROKEN),
        timed_out_unknown_status=1,
        good_completed=len(good),
    )
