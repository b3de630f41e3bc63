"""Real Flower (``stt-workers flower``) against the test's Redis, a real worker and the emulator.

Checks what an operator sees through Flower's HTTP API with basic auth: the submit and store
steps of each job with readable arguments, no events at all from ``stt.poll`` (a waiting
job's polls would cost more in events than in work: tasks.monitoring.QuietAMQP), 401
without credentials, Prometheus ``/metrics`` counting our tasks, and state kept across a
restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tasks.jobs import transcribe
from tasks.models import JobStatus
from tests.fixtures.flower import FlowerProcess
from tests.fixtures.services import wait_for
from tests.fixtures.stack import Stack

STEPS = ("stt.submit", "stt.store")  # what Flower shows
ALL_STEPS = ("stt.submit", "stt.poll", "stt.store")


@pytest.fixture
def flower(make_stack: Callable[..., Stack], tmp_path: Path) -> Iterator[FlowerProcess]:
    stack = make_stack()
    process = FlowerProcess(
        env=stack.env, log_path=tmp_path / "flower.log", args=["--db", str(tmp_path / "flower")]
    )
    process.start()
    process.wait_for_events()
    yield process
    process.stop()


def succeeded_by_job(
    flower: FlowerProcess, job_ids: list[str]
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """job id -> task name -> that task's succeeded runs, from /api/tasks."""
    response = flower.get("/api/tasks", state="SUCCESS")
    response.raise_for_status()
    found: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for task in response.json().values():
        job = next((j for j in job_ids if j in (task.get("args") or "")), None)
        if job is not None and task["name"] in ALL_STEPS:
            found.setdefault(job, {}).setdefault(task["name"], []).append(task)
    return found


def test_flower_lists_each_step_with_readable_args_behind_basic_auth(
    flower: FlowerProcess,
) -> None:
    urls = [
        "https://bucket.s3.amazonaws.com/calls/a.mp3?X-Amz-Signature=f00d&X-Amz-Credential=AK1",
        "https://media.example.org/flower/b.mp3",
        "https://media.example.org/force-error/c.mp3",
    ]
    handles = [transcribe(url, "aai/slam-1") for url in urls]
    job_ids = [h.id for h in handles]
    records = [h.wait(timeout=60) for h in handles]
    assert [r.status for r in records] == [JobStatus.COMPLETED] * 2 + [JobStatus.ERROR]

    wait_for(
        lambda: all(
            set(succeeded_by_job(flower, job_ids).get(j, {})) == set(STEPS) for j in job_ids
        ),
        30,
        "Flower to see submit and store succeed for every job",
        0.5,
    )
    seen = succeeded_by_job(flower, job_ids)
    for record in records:
        steps = seen[record.id]
        (submit,) = steps["stt.submit"]
        assert submit["args"] == f"('{record.id}',)"
        assert "stt.poll" not in steps
        (store,) = steps["stt.store"]
        assert f"'status': '{record.status.value}'" in store["args"]
        for task in (submit, store):
            assert "X-Amz" not in str(task) and "f00d" not in str(task)
    info = flower.get(f"/api/task/info/{seen[records[0].id]['stt.submit'][0]['uuid']}").json()
    assert info["name"] == "stt.submit" and info["state"] == "SUCCESS"

    for path in ("/api/tasks", "/api/workers", "/tasks", f"/api/task/info/{info['uuid']}"):
        assert flower.get(path, auth=False).status_code == 401, path
    bad = requests.get(f"{flower.base_url}/api/tasks", auth=("ops", "wrong"), timeout=10)
    assert bad.status_code == 401

    # Prometheus text; Flower serves /metrics (and /healthcheck) without auth by design.
    metrics = flower.get("/metrics")
    assert metrics.status_code == 200
    events: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(metrics.text):
        if family.name == "flower_events":
            for sample in family.samples:
                if sample.name == "flower_events_total":
                    key = (sample.labels["task"], sample.labels["type"])
                    events[key] = events.get(key, 0) + sample.value
    for step in STEPS:
        assert events.get((step, "task-succeeded"), 0) >= len(records), (step, events)
    assert events.get(("stt.submit", "task-sent"), 0) >= len(records)
    assert not [key for key in events if key[0] == "stt.poll"], events


def test_flower_keeps_task_history_across_a_restart(flower: FlowerProcess) -> None:
    handle = transcribe("https://media.example.org/flower/persist.mp3", "aai/slam-1")
    assert handle.wait(timeout=60).status is JobStatus.COMPLETED

    def seen() -> set[str]:
        return set(succeeded_by_job(flower, [handle.id]).get(handle.id, {}))

    wait_for(lambda: seen() == set(STEPS), 30, "Flower to see the job's steps", 0.5)
    flower.stop()
    flower.process = None
    flower.start()  # same --db: the persistent state is read back
    flower.wait_for_events()
    assert seen() == set(STEPS)
