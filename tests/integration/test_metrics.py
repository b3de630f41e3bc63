"""Domain metrics on the real stack: scrape a worker's ``STT_METRICS_PORT`` after a run of
jobs with injected faults, and the counters equal what the store and the emulator counted.

The emulator refuses (429, 500, 503), loses (drops, hangs past the read timeout) and fails
(jobs ending in ``error``) some requests; an in-flight cap makes submits wait; a flaky
receiver makes callbacks retry. Then every series is checked against its source of truth:
rows for jobs, latency, polls, cost, audio and callbacks; the emulator's per-status
request counts for API requests.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tasks import metrics
from tasks.errors import RateLimited
from tasks.inflight import InFlightLimiter
from tasks.jobs import transcribe
from tasks.models import JobStatus
from tasks.pipeline import sweep
from tasks.ratelimit import RateLimiter, limiter_redis
from tasks.store import JobRecord
from tests.fixtures.emulator import EMULATOR_TEST_ARGS, EmulatorHandle
from tests.fixtures.receiver import Receiver, receiver
from tests.fixtures.services import ROOT, RedisServer, WorkerProcess, free_port, wait_for
from tests.fixtures.stack import Stack
from tests.integration.test_pipeline import wait_all
from tests.integration.test_worker_processes import start_node

__all__ = ["receiver"]  # the fixture, imported for pytest

SECRET = "test-callback-secret-0123456789abcdef"
MODELS = ("aai/slam-1", "#g1_nova-2-general", "openai/gpt-4o-mini-transcribe")
HANG_SECONDS = 2.0
READ_TIMEOUT = 1.0
FAULTS = {
    "rate_429": 0.08,
    "rate_500": 0.04,
    "rate_503": 0.04,
    "rate_drop": 0.04,
    "rate_hang": 0.05,  # ~150 requests: some hang in all but ~1 run in 2,000
    "rate_job_error": 0.2,
    "retry_after": 1,
    "hang_seconds": HANG_SECONDS,
}
# Emulator request outcomes that got no answer, as the worker labels them.
NO_ANSWER = {"hang": "timeout", "drop": "connection_error"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of ``name`` over the series whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def by_label(samples: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for (n, ls), v in samples.items():
        if n == name and v:
            labels = dict(ls)
            out[tuple(labels[k] for k in keys)] += v
    return dict(out)


def wait_callbacks(stack: Stack, ids: list[str], timeout: float = 90) -> list[JobRecord]:
    def final() -> bool:
        return all(
            r.callback_status in ("delivered", "failed")
            for r in stack.store.get_many(ids)
            if r.callback_url
        )

    wait_for(final, timeout, "callbacks to end", 0.2)
    return stack.store.get_many(ids)


def wait_answered(emu: EmulatorHandle) -> None:
    """Hung requests are counted by the emulator when they end, after the client gave up."""
    wait_for(
        lambda: all(r["status"] is not None for r in emu.requests_log()),
        HANG_SECONDS + 10,
        "hung requests to end",
    )


def check_jobs(samples: Samples, records: list[JobRecord]) -> None:
    """Jobs, latency, polls, detection lag, cost and audio agree with the rows."""
    rows = Counter((r.model, r.status.value) for r in records)
    assert by_label(samples, "stt_jobs_finished_total", "model", "status") == rows
    assert by_label(samples, "stt_job_latency_seconds_count", "model", "status") == rows
    latency = sum((r.stored_at - r.enqueued_at).total_seconds() for r in records if r.stored_at)
    assert total(samples, "stt_job_latency_seconds_sum") == pytest.approx(latency, abs=1e-3)

    accepted = [r for r in records if r.generation_id is not None]
    assert total(samples, "stt_polls_per_job_count") == len(accepted)
    assert total(samples, "stt_polls_per_job_sum") == sum(r.polls for r in accepted)

    # Detection lag: only jobs the server finished. Each estimate lies between "stored
    # minus first seen finished" and "stored minus submitted" (the create said pending).
    seen = [r for r in records if r.finished_at is not None and r.server_status]
    assert seen and total(samples, "stt_detection_lag_seconds_count") == len(seen)
    lag = total(samples, "stt_detection_lag_seconds_sum")
    low = sum((r.stored_at - r.finished_at).total_seconds() for r in seen)  # type: ignore[operator]
    high = sum((r.stored_at - r.submitted_at).total_seconds() for r in seen)  # type: ignore[operator]
    assert low - 1e-3 <= lag <= high + 1e-3
    # The last pending answer came at least one poll delay (>= 0.15 s here) before the
    # first finished one, and the estimate sits halfway: the poll messages carried it.
    assert lag >= low + 0.05 * len(seen)

    for model in {r.model for r in records}:
        cost = sum(r.cost_usd or 0 for r in records if r.model == model)
        audio = sum(r.audio_seconds or 0 for r in records if r.model == model)
        assert total(samples, "stt_cost_usd_total", model=model) == pytest.approx(cost)
        assert total(samples, "stt_audio_seconds_total", model=model) == pytest.approx(audio)
    assert total(samples, "stt_cost_usd_total") > 0
    assert total(samples, "stt_jobs_in_flight") == 0
    assert total(samples, "stt_jobs_waiting") == 0


def check_api_requests(samples: Samples, emu: EmulatorHandle) -> None:
    """Every request the emulator saw, by endpoint and status, and nothing more."""
    wanted: dict[tuple[str, ...], float] = {}
    for key, n in emu.stats()["by_status"].items():
        endpoint, status = key.split()
        wanted[(endpoint, NO_ANSWER.get(status, status))] = n
    assert by_label(samples, "stt_api_requests_total", "endpoint", "status") == wanted
    for endpoint in ("create", "get"):
        sent = total(samples, "stt_api_requests_total", endpoint=endpoint)
        assert total(samples, "stt_api_request_seconds_count", endpoint=endpoint) == sent


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_counters_after_a_faulty_run_equal_the_store_and_the_emulator(
    database_url: str,
    make_stack: Callable[..., Stack],
    emulator_factory: Callable[..., EmulatorHandle],
    receiver: Receiver,
) -> None:
    emu = emulator_factory(*EMULATOR_TEST_ARGS)
    # Jobs last 2 s at the server, so the first submits fill the in-flight cap of 6 long
    # before any job ends: the later ones are told to wait.
    emu.configure(faults=FAULTS, fixed=2.0)
    port = free_port()
    stack = make_stack(
        db=database_url,
        start_worker=False,
        AIML_API_BASE=emu.base_url,
        STT_READ_TIMEOUT=str(READ_TIMEOUT),
        STT_CONNECT_TIMEOUT="1",
        STT_SUBMIT_MAX_RETRIES="12",
        STT_MAX_IN_FLIGHT="6",
        STT_CALLBACK_SECRET=SECRET,
        STT_CALLBACK_ALLOW_NETWORKS="127.0.0.0/8",
        STT_CALLBACK_MAX_ATTEMPTS="2",
        STT_METRICS_PORT=str(port),
    )
    stack.start_worker()
    receiver.script["/flaky"] = [500, 200]  # one retry, then delivered
    receiver.script["/down"] = [503]  # both attempts fail
    ids = []
    for i in range(24):
        url = f"https://media.example.org/metrics/{i}.mp3"
        if i == 0:
            url = "https://media.example.org/force-http-400/bad.mp3"  # failed at submit
        if i == 1:
            url = "https://media.example.org/force-http-429x1/busy.mp3"  # one 429 for sure
        callback = {3: "/flaky", 4: "/down", 5: "/ok"}.get(i)
        job = transcribe(
            url, MODELS[i % len(MODELS)], callback_url=receiver.url(callback) if callback else None
        )
        ids.append(job.id)
    records = wait_all(stack, ids, timeout=240)
    records = wait_callbacks(stack, ids)
    wait_answered(emu)
    samples = scrape(port)

    # The names the dashboard and the alert rules are checked against (tests/unit).
    exported = {name for name, _ in samples if name.startswith("stt_")}
    assert exported == set(metrics.EXPORTED) - {"stt_beat_scheduled_total"}
    statuses = Counter(r.status for r in records)
    assert statuses[JobStatus.FAILED] == 1 and statuses[JobStatus.COMPLETED] > 10
    check_jobs(samples, records)
    check_api_requests(samples, emu)
    assert total(samples, "stt_api_requests_total", status="429") > 0
    assert total(samples, "stt_api_requests_total", status="timeout") > 0

    delivered = sum(r.callback_status == "delivered" for r in records)
    failed = sum(r.callback_status == "failed" for r in records)
    attempts = sum(r.callback_attempts or 0 for r in records)
    deliveries = by_label(samples, "stt_callback_deliveries_total", "outcome")
    assert (delivered, failed) == (2, 1)
    assert deliveries == {("delivered",): 2, ("retry",): 2, ("failed",): 1}
    assert sum(deliveries.values()) == attempts

    assert total(samples, "stt_limit_waits_total", limit="in_flight") > 0
    assert total(samples, "stt_limit_wait_seconds_total", limit="in_flight") > 0
    assert total(samples, "stt_sweeper_redrives_total") == 0


@pytest.mark.timeout(180)
def test_prefork_children_are_summed_through_the_multiprocess_folder(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    folder = tmp_path / "prom"
    port = free_port()
    stack = make_stack(start_worker=False, STT_METRICS_PORT=str(port))
    # A file left by an earlier run's process: the worker must not add it in.
    folder.mkdir()
    (folder / "counter_999999.db").write_bytes(b"\0" * 8)
    stack.start_worker(
        "--concurrency", "3", "--pool", "prefork", env={"PROMETHEUS_MULTIPROC_DIR": str(folder)}
    )
    ids = [
        transcribe(f"https://media.example.org/prefork/{i}.mp3", MODELS[i % 3]).id
        for i in range(12)
    ]
    records = wait_all(stack, ids)
    samples = scrape(port)
    check_jobs(samples, records)
    assert not (folder / "counter_999999.db").exists()
    # Several children did the work, each counted in its own file.
    assert len(list(folder.glob("counter_*.db"))) >= 2


def test_prefork_without_the_multiprocess_folder_refuses_to_start(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(start_worker=False, STT_METRICS_PORT=str(free_port()))
    env = {k: v for k, v in stack.env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    worker = WorkerProcess(
        env=env, log_path=stack.workdir / "refused.log", args=["--pool", "prefork"]
    )
    try:
        with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR"):
            worker.start()
    finally:
        worker.stop()  # if it did start, it must not outlive the test


def test_sweeper_redrives_are_counted(make_stack: Callable[..., Stack]) -> None:
    port = free_port()
    stack = make_stack(start_worker=False, STT_METRICS_PORT=str(port))
    ids = [transcribe(f"https://media.example.org/lost/{i}.mp3", MODELS[0]).id for i in range(5)]
    stack.redis.client().flushall()  # every submit message is lost
    stack.start_worker()
    sweep.delay(grace=0)  # through the broker, as beat would send it
    records = wait_all(stack, ids)
    assert all(r.status is JobStatus.COMPLETED for r in records)
    samples = scrape(port)
    assert total(samples, "stt_sweeper_redrives_total", step="submit") == len(ids)
    assert total(samples, "stt_sweeper_redrives_total", step="poll") == 0


def test_beat_serves_metrics(make_stack: Callable[..., Stack], tmp_path: Path) -> None:
    port = free_port()
    stack = make_stack(start_worker=False, STT_METRICS_PORT=str(port))
    log = (tmp_path / "beat.log").open("wb")
    beat = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "beat", "-s", str(tmp_path / "schedule")],
        env={**stack.env, "STT_DATABASE_URL": "postgresql://nowhere.invalid/x"},
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def served() -> bool:
            try:
                return bool(scrape(port))
            except requests.ConnectionError:
                return False

        wait_for(served, 30, "beat's metrics endpoint", 0.2)
        samples = scrape(port)
        assert ("stt_beat_scheduled_total", frozenset({("task", "stt.sweep")})) in samples
        # No database in beat: no job gauges (the workers export them).
        assert total(samples, "stt_jobs_in_flight") == 0
    finally:
        beat.terminate()
        beat.wait(20)
        log.close()


def test_limit_waits_are_counted_with_the_wait_handed_out(redis_server: RedisServer) -> None:
    """Both shared limits, on a real Redis, with a frozen clock so each refusal is certain."""
    client = limiter_redis(redis_server.url)
    client.flushall()
    clock = lambda: 1_000.0  # noqa: E731

    def seen(limit: str) -> tuple[float, float]:
        samples = {
            (m.name, s.labels.get("limit")): s.value
            for m in metrics.LIMIT_WAITS.collect() + metrics.LIMIT_WAIT_SECONDS.collect()
            for s in m.samples
        }
        return samples[("stt_limit_waits", limit)], samples[("stt_limit_wait_seconds", limit)]

    rate = RateLimiter(client, 2, clock=clock, key="test:metrics:rate")
    rate.acquire()
    waits, seconds = seen("rate")
    with pytest.raises(RateLimited) as refused:
        rate.acquire()
    assert seen("rate") == (waits + 1, pytest.approx(seconds + refused.value.retry_after))

    cap = InFlightLimiter(client, 1, seed=list, clock=clock, key="test:metrics:inflight")
    cap.acquire("job-a")
    waits, seconds = seen("in_flight")
    with pytest.raises(RateLimited) as refused:
        cap.acquire("job-b")
    assert seen("in_flight") == (waits + 1, pytest.approx(seconds + refused.value.retry_after))


@pytest.mark.timeout(240)
def test_a_node_of_several_worker_processes_serves_their_sum_once(
    make_stack: Callable[..., Stack],
) -> None:
    """``stt-workers worker --processes 2``: the supervisor serves the port for both."""
    port = free_port()
    stack = make_stack(start_worker=False, STT_METRICS_PORT=str(port))
    node = start_node(stack, "--concurrency", "4")
    ids = [
        transcribe(f"https://media.example.org/node/{i}.mp3", MODELS[i % 3]).id for i in range(12)
    ]
    records = wait_all(stack, ids)
    samples = scrape(port)
    check_jobs(samples, records)
    # The workers wrote into the supervisor's folder and did not try the port themselves.
    assert "address already in use" not in node.log().lower()
