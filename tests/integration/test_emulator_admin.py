"""The admin API: per-job facts, create counts, request stats, config and reset."""

from __future__ import annotations

import statistics
import time
from datetime import datetime

import pytest
import requests

from tests.fixtures.emulator import EmulatorHandle


def test_job_facts(emulator: EmulatorHandle) -> None:
    url = "https://example.com/force-duration-8/a.mp3"
    before = time.time()
    generation_id = emulator.create(url, "aai/nano", language="de", prompt="hi").json()[
        "generation_id"
    ]
    emulator.wait(generation_id)
    job = emulator.job(generation_id)
    assert (job["url"], job["model"], job["duration"], job["language"]) == (
        url,
        "aai/nano",
        8.0,
        "de",
    )
    assert before <= job["created_ts"] <= time.time()
    assert job["finished"] is True and job["status"] == "completed"
    assert job["finished_ts"] > job["created_ts"]
    finished_at = datetime.fromisoformat(job["finished_at"]).timestamp()
    assert finished_at == pytest.approx(job["finished_ts"], abs=0.001)
    assert job["polls"] >= 1
    assert [j["generation_id"] for j in emulator.jobs()] == [generation_id]


def test_unknown_job_is_404(emulator: EmulatorHandle) -> None:
    response = requests.get(f"{emulator.base_url}/_emulator/jobs/nope", timeout=10)
    assert response.status_code == 404


def test_create_counts_show_duplicates(emulator: EmulatorHandle) -> None:
    for url in (
        "https://example.com/a.mp3",
        "https://example.com/a.mp3",
        "https://example.com/b.mp3",
    ):
        emulator.create(url)
    assert emulator.create_counts() == {
        "https://example.com/a.mp3": 2,
        "https://example.com/b.mp3": 1,
    }


def test_request_stats_and_second_buckets(emulator: EmulatorHandle) -> None:
    started = int(time.time())
    ids = [
        emulator.create(f"https://example.com/{i}.mp3").json()["generation_id"] for i in range(5)
    ]
    for generation_id in ids:
        emulator.poll(generation_id)
    emulator.poll("missing")
    stats = emulator.stats()
    assert stats["total"] == 11
    assert stats["by_endpoint"] == {"create": 5, "get": 6}
    assert stats["by_status"] == {"create 201": 5, "get 201": 5, "get 404": 1}
    assert sum(stats["per_second"]["create"].values()) == 5
    assert sum(stats["per_second"]["all"].values()) == 11
    assert all(int(second) >= started for second in stats["per_second"]["all"])
    assert stats["max_per_second"]["create"] >= 1
    assert stats["jobs"] == 5
    assert stats["rss_bytes"] > 1_000_000


def test_admin_calls_are_not_counted(emulator: EmulatorHandle) -> None:
    emulator.jobs()
    emulator.config()
    requests.get(emulator.sample_url(1), timeout=10)
    assert emulator.stats()["total"] == 0


def test_reset_forgets_everything_and_restores_the_startup_config(
    emulator: EmulatorHandle,
) -> None:
    startup = emulator.config()
    emulator.create("https://example.com/a.mp3")
    emulator.configure(dialect="v2", fixed=9.0, faults={"rate_500": 0.5})
    emulator.reset()
    assert emulator.config() == startup
    assert emulator.jobs() == []
    assert emulator.create_counts() == {}
    assert emulator.stats()["total"] == 0


def test_configure_answers_the_effective_config(emulator: EmulatorHandle) -> None:
    config = emulator.configure(speed=0.5, fixed=None, queue_delay=1.0, retention=60)
    assert (config["speed"], config["fixed"], config["queue_delay"], config["retention"]) == (
        0.5,
        None,
        1.0,
        60.0,
    )
    assert emulator.config() == config


def test_bad_settings_are_refused_by_name(emulator: EmulatorHandle) -> None:
    url = f"{emulator.base_url}/_emulator/config"
    for settings, word in (
        ({"speeed": 1}, "speeed"),
        ({"speed": "fast"}, "speed"),
        ({"retention": 0}, "retention"),
        ({"seed": 1.5}, "seed"),
        ({"models": {"acme/x": "acme"}}, "family must be one of"),
        ({"models": ["acme/x"]}, "models"),
    ):
        response = requests.post(url, json=settings, timeout=10)
        assert response.status_code == 400
        assert word in response.json()["error"]
    assert requests.post(url, data=b"[1]", timeout=10).status_code == 400


def test_expire_forgets_a_pending_job_now(emulator: EmulatorHandle) -> None:
    emulator.configure(fixed=3600.0)
    generation_id = emulator.create("https://example.com/e.mp3").json()["generation_id"]
    assert emulator.poll(generation_id).json()["status"] in ("queued", "generating")
    emulator.expire(generation_id)
    gone = emulator.poll(generation_id)
    assert gone.status_code == 404 and gone.json()["message"] == "Generation not found"
    again = requests.post(f"{emulator.base_url}/_emulator/jobs/{generation_id}/expire", timeout=10)
    assert again.status_code == 404


def test_a_model_taught_at_run_time_is_served_until_reset(emulator: EmulatorHandle) -> None:
    refused = emulator.create("https://example.com/m.mp3", "aai/universal-3")
    assert refused.status_code == 400
    assert refused.json()["errors"] == [
        {"field": "model", "message": "model 'aai/universal-3' is not supported"}
    ]
    config = emulator.configure(models={"aai/universal-3": "assemblyai"}, fixed=0.0)
    assert config["models"] == {"aai/universal-3": "assemblyai"}
    created = emulator.create("https://example.com/m.mp3", "aai/universal-3")
    assert created.status_code == 201, created.text
    result = emulator.wait(created.json()["generation_id"])["result"]
    assert result["status"] == "completed" and "audio_duration" in result  # AssemblyAI's shape
    emulator.reset()
    assert emulator.create("https://example.com/m.mp3", "aai/universal-3").status_code == 400


def test_realistic_timing_spreads_finish_times_by_duration(emulator: EmulatorHandle) -> None:
    """Jobs of one duration finish at different times; longer audio takes longer."""
    emulator.configure(speed=0.01, fixed=None, queue_delay=0.0, spread=0.5, queue_spread=0.0)
    finish: dict[int, list[float]] = {10: [], 200: []}
    for seconds, spans in finish.items():
        for i in range(20):
            url = f"https://example.com/force-duration-{seconds}/spread-{i}.mp3"
            job = emulator.job(emulator.create(url, "aai/nano").json()["generation_id"])
            spans.append(job["finished_ts"] - job["started_ts"])
    assert len({round(s, 6) for s in finish[10]}) == 20  # spread, not one fixed time
    assert statistics.median(finish[200]) > 10 * statistics.median(finish[10])
    assert emulator.config()["spread"] == 0.5
