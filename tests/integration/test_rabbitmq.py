"""RabbitMQ as the broker (docs/operations.md): quorum queue, native delayed delivery.

Uses the machine's RabbitMQ (127.0.0.1:5672, guest/guest; STT_TEST_AMQP_HOST overrides),
each test in a private virtual host (tests/fixtures/rabbitmq.py). What a user can see:
jobs reach the store; a waiting poll sits in the broker's delay queues, not in a worker;
retries go through the broker too; a worker killed with ``kill -9`` delays none of its
jobs' polls by more than about one poll interval; a worker refuses a classic queue; with
every waiting message purged, the sweeper brings each job back within two minutes; a
burst with task events on never stalls the worker.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery
from kombu import Connection, Exchange, Queue

from tasks.broker import BrokerMisconfigured
from tasks.celeryconfig import producer_config
from tasks.jobs import TranscriptionHandle, transcribe
from tasks.models import JobStatus
from tasks.settings import Settings
from tests.fixtures.rabbitmq import RabbitMQ
from tests.fixtures.reliability import RECOVERY_TARGET_S, lose_the_broker_mid_run
from tests.fixtures.services import ROOT, wait_for
from tests.fixtures.stack import Stack


def test_a_worker_on_rabbitmq_runs_jobs_to_the_store_through_a_quorum_queue(
    make_stack: Callable[..., Stack], rabbitmq: RabbitMQ, amqp_vhost: str
) -> None:
    stack = make_stack(STT_BROKER_URL=rabbitmq.url(amqp_vhost))
    urls = [stack.emulator.sample_url(2), "https://media.example.org/rabbit/a.mp3"]
    handles = [transcribe(url, "#g1_nova-2-general") for url in urls]
    records = [h.wait(timeout=60) for h in handles]
    assert [r.status for r in records] == [JobStatus.COMPLETED] * 2
    assert [r.text for r in records] == [stack.emulator.expected_transcript(u) for u in urls]
    assert all(r.polls >= 1 for r in records)  # countdown retries work on amqp too
    log = stack.workers[0].log()
    assert "amqp://guest:**@127.0.0.1:5672/" in log
    assert "holds waiting polls (quorum queue, native delayed delivery)" in log
    assert "holds waiting polls in its own memory" not in log
    queues = rabbitmq.queues(amqp_vhost)
    assert queues["stt"][0] == "quorum"
    assert queues["celery_delayed_0"][0] == "quorum"  # kombu's delay levels exist
    # The liveness check of compose and deploy/k8s works on RabbitMQ too.
    ping = subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.celery_app",
            "inspect",
            "ping",
            "--timeout",
            "10",
        ],
        env=stack.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ping.returncode == 0 and "pong" in ping.stdout, ping.stdout + ping.stderr


def test_a_waiting_poll_waits_in_the_broker_not_in_the_worker(
    make_stack: Callable[..., Stack], rabbitmq: RabbitMQ, amqp_vhost: str
) -> None:
    """With a 30 s first poll delay, after the submit the poll is a message in a delay
    queue; the worker holds nothing (it could be killed and lose nothing)."""
    stack = make_stack(
        STT_BROKER_URL=rabbitmq.url(amqp_vhost), STT_POLL_FIRST_DELAY="30", STT_POLL_MAX_DELAY="30"
    )
    ids = [transcribe(f"https://media.example.org/rabbit/wait-{i}.mp3").id for i in range(5)]
    wait_for(lambda: all(r.generation_id for r in stack.store.get_many(ids)), 30, "submits")
    wait_for(lambda: rabbitmq.waiting_in_delay_queues(amqp_vhost) == 5, 20, "5 delayed polls")
    assert rabbitmq.queues(amqp_vhost)["stt"][1:] == (0, 0)  # nothing ready, nothing held
    assert all(r.polls == 0 for r in stack.store.get_many(ids))


def test_retries_of_submit_and_poll_go_through_the_broker(
    make_stack: Callable[..., Stack], rabbitmq: RabbitMQ, amqp_vhost: str
) -> None:
    """503s on create and 429s on poll: the job is created once and completes; each retry
    waited at least a second (the broker's delay queues count whole seconds)."""
    stack = make_stack(STT_BROKER_URL=rabbitmq.url(amqp_vhost))
    url = "https://media.example.org/force-http-503x2/force-poll-429x2/retry.mp3"
    record = transcribe(url, "aai/slam-1").wait(timeout=90)
    assert record.status is JobStatus.COMPLETED, record.error
    assert record.text == stack.emulator.expected_transcript(url)
    assert stack.emulator.create_calls()[url] == 3
    assert stack.emulator.create_counts()[url] == 1
    log = stack.emulator.requests_log()
    creates = [r["ts"] for r in log if r["path"] == "/v1/stt/create"]
    polls = [r["ts"] for r in log if r["path"] == f"/v1/stt/{record.generation_id}"]
    assert len(polls) >= 3
    gaps = [b - a for a, b in itertools.pairwise(creates)]
    gaps += [b - a for a, b in itertools.pairwise(polls)]
    assert min(gaps) >= 0.9, gaps


def test_a_worker_refuses_an_existing_classic_queue_in_one_line(
    make_stack: Callable[..., Stack], rabbitmq: RabbitMQ, amqp_vhost: str
) -> None:
    """An earlier release (or a web app without producer_config) made ``stt`` a classic
    queue: the worker stops at once, saying so, instead of holding countdowns itself."""
    url = rabbitmq.url(amqp_vhost)
    with Connection(url) as connection:  # as Celery's defaults declare it
        Queue("stt", Exchange("stt", type="direct"), "stt").bind(connection).declare()
    stack = make_stack(STT_BROKER_URL=url, start_worker=False)
    done = subprocess.run(
        [sys.executable, "-m", "workers.cli", "worker", "--concurrency", "2"],
        env=stack.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: RabbitMQ queue 'stt' in vhost '{amqp_vhost}' is a classic queue; the workers "
        "need a quorum queue so that waiting polls stay in the broker: delete it "
        f"(rabbitmqctl delete_queue -p {amqp_vhost} stt; stt.sweep re-drives its jobs from "
        "the database) and start again (docs/operations.md)"
    ]
    assert "ready." not in done.stdout + done.stderr
    assert rabbitmq.queues(amqp_vhost)["stt"][0] == "classic"  # left as it was


POLL_INTERVAL = 2.0
KILL_JOBS = 60


def test_kill_9_of_one_of_three_workers_delays_no_poll_past_one_interval(
    make_stack: Callable[..., Stack],
    rabbitmq: RabbitMQ,
    amqp_vhost: str,
    reliability: Callable[..., Any],
) -> None:
    """RabbitMQ gives a dead consumer's unacked messages back when its connection drops,
    and the waiting polls were never in a worker: after ``kill -9`` the longest gap
    between two polls of any job stays near one poll interval (Redis: the visibility
    timeout, 15 minutes by default)."""
    stack = make_stack(
        STT_BROKER_URL=rabbitmq.url(amqp_vhost),
        STT_POLL_FIRST_DELAY=str(POLL_INTERVAL),
        STT_POLL_MAX_DELAY=str(POLL_INTERVAL),
        STT_POLL_JITTER="0",
        start_worker=False,
    )
    for name in ("w1", "w2", "w3"):
        stack.start_worker("--concurrency", "8", "--pool", "threads", "-n", f"{name}@%h")
    stack.emulator.configure(fixed=24.0)  # about ten polls a job
    urls = [f"https://media.example.org/rabbit/kill/{i}.mp3" for i in range(KILL_JOBS)]
    ids = [transcribe(url, "aai/slam-1").id for url in urls]
    wait_for(
        lambda: sum(r.polls >= 2 for r in stack.store.get_many(ids)) == KILL_JOBS,
        60,
        "every job to be polling",
    )
    stack.workers[0].kill()
    killed_at = time.time()
    pending = [r for r in stack.store.get_many(ids) if not r.done]
    assert len(pending) == KILL_JOBS, "killed too late to prove anything"

    done = [TranscriptionHandle(i).wait(timeout=120) for i in ids]
    assert [r.status for r in done] == [JobStatus.COMPLETED] * KILL_JOBS
    assert [r.text for r in done] == [stack.emulator.expected_transcript(u) for u in urls]
    assert stack.emulator.create_counts() == dict.fromkeys(urls, 1)

    # The gap across the kill, per job: its last poll before it to its first after.
    polls: dict[str, list[float]] = defaultdict(list)
    for entry in stack.emulator.requests_log():
        if entry["method"] == "GET" and entry["path"].startswith("/v1/stt/"):
            polls[entry["path"]].append(entry["ts"])
    gaps, usual = [], []
    for record in done:
        times = sorted(polls[f"/v1/stt/{record.generation_id}"])
        before = [t for t in times if t <= killed_at]
        after = [t for t in times if t > killed_at]
        usual += [b - a for a, b in itertools.pairwise(before)]
        if after:  # else its last poll, just before the kill, saw it finish
            gaps.append(after[0] - (before[-1] if before else killed_at))
    assert len(gaps) >= KILL_JOBS * 3 // 4, "most jobs must have been polled across the kill"
    worst = max(gaps)
    reliability(
        "RabbitMQ: kill -9 of one of three workers (poll interval 2 s)",
        jobs_in=KILL_JOBS,
        jobs_stored=len(done),
        api_duplicates=0,
        recover_s=worst,
        poll_interval_s=POLL_INTERVAL,
        worst_gap_s=round(worst, 2),
        median_gap_s=round(sorted(gaps)[len(gaps) // 2], 2),
        worst_gap_before_kill_s=round(max(usual), 2),
    )
    # One interval, plus the second the broker's delay queues round up to, plus slack for a
    # loaded machine: far below Redis's visibility timeout either way.
    assert worst <= POLL_INTERVAL + 1 + 5, sorted(gaps)[-5:]


BURST_JOBS = 1500


def test_a_burst_with_task_events_on_never_stalls_the_threads_pool(
    make_stack: Callable[..., Stack], rabbitmq: RabbitMQ, amqp_vhost: str
) -> None:
    """Task events on (Flower needs them) and every task publish confirmed: under load a
    pool thread used to wait forever for an event's confirm that the worker's event loop
    had read off the same socket; the worker stopped, RabbitMQ dropped it for missed
    heartbeats, it reconnected and stalled again (tasks/consumer.py). A burst of jobs
    through 16 threads: every job stored, and the worker never lost its broker."""
    stack = make_stack(STT_BROKER_URL=rabbitmq.url(amqp_vhost), start_worker=False)
    # What Flower would see: the worker's task events, still sent (without confirms).
    with Connection(rabbitmq.url(amqp_vhost)) as connection:
        events = Exchange("celeryev", type="topic")
        Queue("test-task-events", events, routing_key="task.#")(
            connection.default_channel
        ).declare()
    worker = stack.start_worker("--concurrency", "16", "--pool", "threads")
    stack.emulator.configure(fixed=2.0)
    urls = [f"https://media.example.org/rabbit/burst/{i}.mp3" for i in range(BURST_JOBS)]
    ids = [transcribe(url, "aai/slam-1").id for url in urls]
    lost = "Connection to broker lost"  # what a stall ends in, after RabbitMQ's 60 s

    # Unstalled, the burst takes a minute or two here; stop early on the first stall.
    wait_for(
        lambda: lost in worker.log() or all(r.done for r in stack.store.get_many(ids)),
        900,
        "every job stored, or the worker stalled",
        interval=1.0,
    )
    log = worker.log()
    assert lost not in log, log[-3000:]
    assert {r.status for r in stack.store.get_many(ids)} == {JobStatus.COMPLETED}
    assert stack.emulator.create_counts() == dict.fromkeys(urls, 1)
    # Events of each job's submit and store (the polls send none), some still buffered.
    assert rabbitmq.queues(amqp_vhost)["test-task-events"][1] >= BURST_JOBS


def test_transcribe_refuses_a_web_app_publishing_to_rabbitmq_without_the_quorum_queue(
    make_stack: Callable[..., Stack], amqp_url: str
) -> None:
    """A web app's own Celery app with only a broker URL and a route (the pre-RabbitMQ
    README lines) would declare a classic queue: transcribe() says what to add instead,
    and stores nothing."""
    stack = make_stack(STT_BROKER_URL=amqp_url, start_worker=False)
    app = Celery("web", set_as_current=True)
    app.conf.update(broker_url=amqp_url, task_routes={"stt.*": {"queue": "stt"}})
    app.set_default()
    with pytest.raises(BrokerMisconfigured) as info:
        transcribe("https://media.example.org/rabbit/refused.mp3")
    assert "merge tasks.celeryconfig.producer_config()" in str(info.value)
    assert stack.store.list_jobs(limit=None) == []
    fixed = Celery("web", set_as_current=True)
    fixed.conf.update(producer_config())
    fixed.set_default()
    handle = transcribe("https://media.example.org/rabbit/accepted.mp3")
    assert handle.status() is JobStatus.PENDING


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_purged_queues_and_kill_9_default_sweep_settings_all_stored_within_two_minutes(
    make_stack: Callable[..., Stack],
    rabbitmq: RabbitMQ,
    amqp_vhost: str,
    start_beat: Any,
    reliability: Callable[..., Any],
) -> None:
    """Issue 16, point 3, on RabbitMQ (the twin of test_faults_broker.py's FLUSHALL test):
    60 jobs polling, still processing at the API, their worker killed and every message
    the broker held for the workers purged: the ``stt`` queue and each delay level where
    the waiting polls sit. A real beat with the default sweep settings re-drives every
    job's poll from its row; all are stored within two minutes, none created twice."""
    defaults = Settings()
    stack = make_stack(
        STT_BROKER_URL=rabbitmq.url(amqp_vhost),
        # Polls every 1-3 s (the broker's delays are whole seconds): ~20 polls/s for 60
        # jobs on a shared machine. A poll's lease runs LEASE_EXTRA past its next run
        # whatever the interval, so the recovery bound hardly depends on it.
        STT_POLL_FIRST_DELAY="1",
        STT_POLL_MAX_DELAY="3",
    )
    processing = 45.0  # seconds per job at the emulator: every job is pending at the purge

    def purge() -> dict[str, int]:
        # The broker gives the dead worker's unacknowledged messages back when it sees
        # the connection drop; only then does a purge take them too.
        wait_for(lambda: rabbitmq.consumers(amqp_vhost) == 0, 30, "the worker's consumer to go")
        purged = rabbitmq.lose_waiting_messages(amqp_vhost)
        assert rabbitmq.ready_for_workers(amqp_vhost) == 0
        return purged

    run = lose_the_broker_mid_run(
        stack, start_beat, purge, name="purged-default", processing=processing, polling=60
    )
    # Every job was polling, none had finished at the API, and each had its next step as
    # a message in the broker, now gone: only the sweeper could have brought them back.
    assert run.polling_at_loss == 60
    assert not any(r.done for r in run.before.values())
    assert run.lost_after_s < processing, "the API had finished some jobs before the purge"
    assert sum(run.lost.values()) >= 60, f"purged only {run.lost}"
    assert any(name.startswith("celery_delayed_") for name in run.lost), run.lost
    assert run.redriven["poll"] >= 60 and run.redriven["submit"] == 0, run.redriven
    assert all(r.redrives >= 1 for r in run.records), [r.redrives for r in run.records]
    assert run.duplicates == 0
    assert stack.emulator.create_counts() == dict.fromkeys(run.urls, 1)
    reliability(
        "RabbitMQ: stt queue and delay queues purged + worker kill -9 mid-run, real beat, "
        f"default sweep settings (every {defaults.sweep_interval:g} s, "
        f"grace {defaults.sweep_grace:g} s)",
        jobs_in=len(run.ids),
        jobs_stored=sum(r.done for r in run.records),
        api_duplicates=run.duplicates,
        recover_s=run.recover_s,
        polling_at_purge=run.polling_at_loss,
        messages_purged=run.lost,  # by queue: where the waiting polls were
        re_driven=run.redriven,
    )
    assert run.recover_s < RECOVERY_TARGET_S, f"stored again only after {run.recover_s:.0f} s"
