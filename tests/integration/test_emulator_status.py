"""The status machine: queued -> generating -> completed/error on schedule; retention."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.contract.schema import ERROR_ENVELOPE, validate
from tests.fixtures.emulator import EmulatorHandle
from tests.fixtures.services import wait_for


def statuses_until_final(emulator: EmulatorHandle, generation_id: str) -> list[dict[str, Any]]:
    """Poll every 20 ms; each body with the local time it arrived."""
    seen = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body = emulator.poll(generation_id).json()
        seen.append({**body, "at": time.time()})
        if body["status"] in ("completed", "error"):
            return seen
        time.sleep(0.02)
    raise AssertionError(seen[-1])


def distinct(seen: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for body in seen:
        if not out or out[-1] != body["status"]:
            out.append(body["status"])
    return out


def test_status_moves_queued_generating_completed_on_schedule(emulator: EmulatorHandle) -> None:
    emulator.configure(queue_delay=0.3, fixed=0.4)
    created_at = time.time()
    generation_id = emulator.create("https://example.com/a.mp3").json()["generation_id"]
    seen = statuses_until_final(emulator, generation_id)
    assert distinct(seen) == ["queued", "generating", "completed"]
    first_generating = next(b["at"] for b in seen if b["status"] == "generating")
    assert first_generating - created_at == pytest.approx(0.3, abs=0.15)
    assert seen[-1]["at"] - created_at == pytest.approx(0.7, abs=0.15)
    job = emulator.job(generation_id)
    assert job["finished_ts"] - job["created_ts"] == pytest.approx(0.7, abs=0.01)
    assert job["started_ts"] - job["created_ts"] == pytest.approx(0.3, abs=0.01)


def test_result_is_null_until_completed(emulator: EmulatorHandle) -> None:
    generation_id = emulator.create("https://example.com/a.mp3").json()["generation_id"]
    seen = statuses_until_final(emulator, generation_id)
    assert [b["result"] for b in seen[:-1]] == [None] * (len(seen) - 1)
    assert seen[-1]["result"]["text"]


def test_error_jobs_pass_through_the_pending_states(emulator: EmulatorHandle) -> None:
    generation_id = emulator.create("https://example.com/force-error/a.mp3").json()["generation_id"]
    seen = statuses_until_final(emulator, generation_id)
    assert distinct(seen) == ["queued", "generating", "error"]
    assert seen[-1]["error"]


def test_processing_time_scales_with_duration_under_speed(emulator: EmulatorHandle) -> None:
    emulator.configure(fixed=None, speed=0.1, queue_delay=0.0)
    short = emulator.create("https://example.com/force-duration-2/a.mp3").json()
    long = emulator.create("https://example.com/force-duration-20/a.mp3").json()
    for generation_id, expected in ((short["generation_id"], 0.2), (long["generation_id"], 2.0)):
        job = emulator.job(generation_id)
        assert job["finished_ts"] - job["started_ts"] == pytest.approx(expected, abs=0.01)


def test_a_schedule_is_fixed_when_the_job_is_created(emulator: EmulatorHandle) -> None:
    generation_id = emulator.create("https://example.com/a.mp3").json()["generation_id"]
    emulator.configure(fixed=100.0)
    assert emulator.wait(generation_id, timeout=3)["status"] == "completed"


def test_polls_and_first_final_poll_are_recorded(emulator: EmulatorHandle) -> None:
    generation_id = emulator.create("https://example.com/a.mp3").json()["generation_id"]
    seen = statuses_until_final(emulator, generation_id)
    emulator.poll(generation_id)
    job = emulator.job(generation_id)
    assert job["polls"] == len(seen) + 1
    assert job["first_final_poll_ts"] == pytest.approx(seen[-1]["at"], abs=0.1)
    assert job["first_final_poll_ts"] >= job["finished_ts"]


def test_finished_jobs_expire_after_retention(
    emulator_factory: Callable[..., EmulatorHandle],
) -> None:
    emu = emulator_factory("--retention", "1", "--fixed", "0.1", "--queue-delay", "0")
    generation_id = emu.create("https://example.com/a.mp3").json()["generation_id"]
    assert emu.wait(generation_id)["status"] == "completed"
    time.sleep(0.3)
    assert emu.poll(generation_id).status_code == 201  # within retention
    time.sleep(1.0)
    response = emu.poll(generation_id)
    assert response.status_code == 404
    validate(response.json(), ERROR_ENVELOPE)


def test_expired_jobs_are_purged_without_being_polled(
    emulator_factory: Callable[..., EmulatorHandle],
) -> None:
    emu = emulator_factory("--retention", "0.5", "--fixed", "0", "--queue-delay", "0")
    for i in range(50):
        assert emu.create(f"https://example.com/{i}.mp3").status_code == 201
    # retention 0.5 s, purge every 0.25 s; a wait, not a window: the machine may be busy
    wait_for(lambda: emu.stats()["jobs"] == 0, 30, "the finished jobs to be purged")
    assert emu.stats()["by_endpoint"].get("get", 0) == 0  # purged without being polled


def test_pending_jobs_do_not_expire(emulator_factory: Callable[..., EmulatorHandle]) -> None:
    emu = emulator_factory("--retention", "0.5", "--fixed", "5", "--queue-delay", "0")
    generation_id = emu.create("https://example.com/a.mp3").json()["generation_id"]
    time.sleep(1.0)
    assert emu.poll(generation_id).json()["status"] == "generating"


def test_a_retention_shortened_at_run_time_purges_promptly(emulator: EmulatorHandle) -> None:
    emulator.configure(retention=0.5, fixed=0.0, queue_delay=0.0)
    for i in range(10):
        emulator.create(f"https://example.com/{i}.mp3")
    wait_for(lambda: emulator.stats()["jobs"] == 0, 30, "the finished jobs to be purged")
