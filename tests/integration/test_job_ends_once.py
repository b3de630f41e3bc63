"""Every job ends, once (issue 12, cases 3-5): ids and status words of any length, long
waits that are not lost work, and a backlog longer than the sweeper's grace.

Each test runs the real worker (and, where the sweeper matters, a real beat) against
either the emulator or a scripted server answering exact bodies (tests/fixtures/
scripted_api.py), and counts what the API saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tasks.jobs import transcribe
from tasks.models import JobStatus
from tasks.store import MAX_SERVER_STATUS_CHARS, JobRecord, status_for_row
from tests.fixtures.scripted_api import Answer, ScriptedAPI
from tests.fixtures.services import wait_for
from tests.fixtures.stack import Stack

MODEL = "openai/gpt-4o-mini-transcribe"
RESULT = {"text": "every job ends once", "usage": {"input_tokens": 7, "output_tokens": 4}}


def completed(generation_id: str) -> Answer:
    return Answer(200, {"generation_id": generation_id, "status": "completed", "result": RESULT})


def wait_done(stack: Stack, job_id: str, timeout: float = 90) -> JobRecord:
    def done() -> bool:
        record = stack.store.get(job_id)
        return record is not None and record.done

    wait_for(done, timeout, f"job {job_id} to end", 0.1)
    record = stack.store.get(job_id)
    assert record is not None
    return record


def test_a_generation_id_of_300_characters_is_recorded_and_created_once(
    make_stack: Callable[..., Stack], scripted_api: ScriptedAPI, database_url: str
) -> None:
    long_id = "gen-" + "L" * 296
    scripted_api.on_create(Answer(200, {"generation_id": long_id, "status": "queued"}))
    scripted_api.on_get(completed(long_id))
    stack = make_stack(db=database_url, **scripted_api.env())

    record = wait_done(stack, transcribe("https://media.example.org/long-id.wav", MODEL).id)

    assert record.status is JobStatus.COMPLETED, record.error
    assert record.generation_id == long_id
    assert record.text == RESULT["text"]
    assert len(scripted_api.requests("POST")) == 1
    assert [r.status for r in scripted_api.requests("GET")] == [200]


def test_a_status_word_of_any_length_is_pending_on_the_poll_schedule(
    make_stack: Callable[..., Stack], scripted_api: ScriptedAPI
) -> None:
    word = "re\x1b[2Jticulating-" + "s" * 5000
    kept = status_for_row(word)
    assert kept is not None and len(kept) == MAX_SERVER_STATUS_CHARS and "\x1b" not in kept
    scripted_api.on_create(Answer(200, {"generation_id": "gen-long-status", "status": "queued"}))
    scripted_api.on_get(Answer(200, {"generation_id": "gen-long-status", "status": word}))
    stack = make_stack(**scripted_api.env())
    job_id = transcribe("https://media.example.org/long-status.wav", MODEL).id

    # The row shows the word, cut and cleaned, while the job polls on (no database error).
    wait_for(
        lambda: getattr(stack.store.get(job_id), "server_status", None) == kept,
        60,
        "the long status word on the row",
    )
    wait_for(lambda: len(scripted_api.requests("GET")) >= 3, 60, "three polls")
    scripted_api.on_get(completed("gen-long-status"))
    record = wait_done(stack, job_id)

    assert record.status is JobStatus.COMPLETED, record.error
    gets = scripted_api.requests("GET")
    assert record.polls == len(gets)
    assert len(scripted_api.requests("POST")) == 1
    log = stack.workers[0].log()
    assert "database error" not in log and "StringDataRightTruncation" not in log


def test_a_submit_waiting_out_retry_after_longer_than_the_grace_is_not_re_driven(
    make_stack: Callable[..., Stack], scripted_api: ScriptedAPI, start_beat: Any
) -> None:
    """Two ``Retry-After`` answers keep the job pending for six times the sweeper's grace
    (scaled down from two ``Retry-After: 180`` against the 30 s default)."""
    throttled = Answer(429, {"message": "slow down"}, {"Retry-After": "6"})
    scripted_api.on_create(
        throttled, throttled, Answer(200, {"generation_id": "gen-patient", "status": "queued"})
    )
    scripted_api.on_get(completed("gen-patient"))
    stack = make_stack(**scripted_api.env(), STT_SWEEP_INTERVAL="1", STT_SWEEP_GRACE="2")
    beat = start_beat(stack.env)

    record = wait_done(stack, transcribe("https://media.example.org/patient.wav", MODEL).id)

    assert record.status is JobStatus.COMPLETED, record.error
    creates = scripted_api.requests("POST")
    assert [r.status for r in creates] == [429, 429, 200]  # one job created, never re-driven
    assert creates[1].ts - creates[0].ts >= 6 and creates[2].ts - creates[1].ts >= 6
    assert record.redrives == 0 and record.submit_attempts == 3
    assert "stt.sweep" in beat.log()  # the sweeper ran all along


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_backlog_behind_the_in_flight_cap_longer_than_the_grace_creates_each_job_once(
    make_stack: Callable[..., Stack], start_beat: Any, reliability: Callable[..., Any]
) -> None:
    jobs, cap, grace = 500, 20, 30.0  # the default grace, swept every 5 s
    # Each job holds its in-flight slot at least until its first poll, 3 s after submit
    # (no jitter), so 500 jobs through 20 slots take >= 25 x 3 = 75 s, more than twice the
    # grace on any machine: the backlog's length comes from the cap, not from the load.
    stack = make_stack(
        STT_MAX_IN_FLIGHT=str(cap),
        STT_SWEEP_INTERVAL="5",
        STT_SWEEP_GRACE=str(grace),
        STT_POLL_FIRST_DELAY="3",
        STT_POLL_MAX_DELAY="3",
        STT_POLL_JITTER="0",
    )
    start_beat(stack.env)
    urls = [f"https://media.example.org/backlog/{i}.mp3" for i in range(jobs)]
    started = time.monotonic()
    ids = [transcribe(url, "aai/slam-1").id for url in urls]

    def all_done() -> bool:
        return all(r.done for r in stack.store.get_many(ids))

    wait_for(all_done, 800, "the backlog to drain", 2.0)
    took = time.monotonic() - started
    assert took > 2 * grace, "the backlog drained faster than the cap allows: was the cap held?"

    records = stack.store.get_many(ids)
    assert all(r.status is JobStatus.COMPLETED for r in records)
    creates = stack.emulator.create_counts()
    assert sum(creates.get(url, 0) for url in urls) == jobs
    assert all(creates[url] == 1 for url in urls)
    # One live poll chain per job: the API saw exactly the polls the row counted.
    gets: dict[str, int] = {}
    for entry in stack.emulator.requests_log():
        if entry["method"] == "GET" and entry["path"].startswith("/v1/stt/"):
            gets[entry["path"]] = gets.get(entry["path"], 0) + 1
    # A job the sweeper re-drove (only when a worker runs further behind its queue than
    # lease + grace) may show one request more per re-drive: its late chain's last,
    # which found the fence moved and stopped. Everywhere else the counts match.
    doubled = [
        r.id
        for r in records
        if gets.get(f"/v1/stt/{r.generation_id}", 0) != r.polls and r.redrives == 0
    ]
    assert doubled == [], f"{len(doubled)} jobs polled by more than one chain"
    reliability(
        f"{jobs} jobs behind STT_MAX_IN_FLIGHT={cap}, sweeper every 5 s with a {grace:g} s grace",
        jobs_in=jobs,
        jobs_stored=sum(r.done for r in records),
        api_duplicates=sum(creates[url] - 1 for url in urls),
        recover_s=None,
        backlog_s=round(took, 1),
        re_driven=sum(r.redrives for r in records),
    )
