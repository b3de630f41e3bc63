"""Database down mid-run (PostgreSQL): every step's write fails, is retried by Celery's
``autoretry_for`` backoff (tasks.pipeline._DB_RETRY), and nothing is lost when it returns.

The outage is real: the database stops accepting connections (``ALLOW_CONNECTIONS false``
holds even for a superuser) and every open session is terminated, as in a failover.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy

from tasks import runtime
from tasks.jobs import transcribe
from tasks.models import JobStatus
from tasks.pipeline import store
from tasks.polling import PollPolicy
from tasks.settings import get_settings
from tasks.steps import Outcome, PollRef, poll_once, submit_job
from tasks.store import utcnow
from tasks.validation import validate_request
from tests.fixtures.reliability import api_duplicates
from tests.fixtures.services import POSTGRES_URL, _truncate
from tests.fixtures.stack import Stack
from tests.integration.test_pipeline import wait_all

OUTAGE_SECONDS = 8.0


@contextmanager
def database_down(database_url: str) -> Iterator[None]:
    name = sqlalchemy.engine.make_url(database_url).database
    admin = sqlalchemy.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false")
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
        yield
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")
        admin.dispose()


def test_database_down_mid_run_steps_retry_and_nothing_is_lost(
    make_stack: Callable[..., Stack], postgres_url: str, reliability: Callable[..., Any]
) -> None:
    _truncate(postgres_url)
    stack = make_stack(db=postgres_url)
    stack.emulator.configure(fixed=None, speed=0.5)  # jobs finish 1.5..10 s in: staggered
    urls = [f"https://media.example.org/force-duration-{3 + i}/db.mp3" for i in range(20)]
    ids = [transcribe(url, "aai/slam-1").id for url in urls]
    deadline = time.monotonic() + 30
    while sum(bool(r.polls) for r in stack.store.get_many(ids)) < 10:
        assert time.monotonic() < deadline, "the worker did not get going"
        time.sleep(0.05)

    with database_down(postgres_url):
        time.sleep(OUTAGE_SECONDS)
    back_at = time.monotonic()
    records = wait_all(stack, ids, timeout=120)
    recover_s = time.monotonic() - back_at

    assert len(stack.store.list_jobs(limit=None)) == len(ids)
    for record, url in zip(records, urls, strict=True):
        assert record.status is JobStatus.COMPLETED, (record.status, record.error)
        assert record.text == stack.emulator.expected_transcript(url)
    duplicates = api_duplicates(stack.emulator.create_counts(), urls)
    assert duplicates == 0
    log = stack.workers[0].log()
    retried = Counter(
        re.findall(r"Task (stt\.\w+)\[[^\]]+\] retry: Retry in [\d.]+s: OperationalError", log)
    )
    assert retried, "no step met the outage: the test proved nothing"
    reliability(
        f"PostgreSQL refusing connections for {OUTAGE_SECONDS:g} s mid-run",
        jobs_in=len(ids),
        jobs_stored=len(records),
        api_duplicates=duplicates,
        recover_s=recover_s,
        db_retries=dict(retried),
    )


def test_database_down_while_storing_the_store_step_retries_until_it_returns(
    make_stack: Callable[..., Stack], postgres_url: str, reliability: Callable[..., Any]
) -> None:
    """The outage meets exactly the store step: submit and poll ran (as the plain step
    functions, in this process) and landed the server's result; then the database goes
    away and the ``stt.store`` messages reach a real worker."""
    _truncate(postgres_url)
    stack = make_stack(db=postgres_url)
    client, store_ = runtime.get_client(), stack.store
    policy = PollPolicy.from_settings(get_settings())
    urls = [f"https://media.example.org/store-outage/{i}.mp3" for i in range(6)]
    outcomes: list[Outcome] = []
    for url in urls:
        record, _ = store_.create_job(validate_request(url, "aai/slam-1"))
        ref = submit_job(store_, client, record.id, policy=policy, now=utcnow())
        assert isinstance(ref, PollRef)
        for attempt in range(100):
            result = poll_once(store_, client, ref, attempt=attempt, policy=policy, now=utcnow())
            if isinstance(result, Outcome):
                outcomes.append(result)
                break
            time.sleep(0.1)
    ids = [o.job_id for o in outcomes]
    assert len(ids) == len(urls) and not any(r.done for r in store_.get_many(ids))

    with database_down(postgres_url):
        for outcome in outcomes:
            store.delay(outcome.to_message())
        time.sleep(OUTAGE_SECONDS)
        log = stack.workers[0].log()
    back_at = time.monotonic()
    records = wait_all(stack, ids, timeout=120)
    recover_s = time.monotonic() - back_at

    retried = re.findall(
        r"Task stt\.store\[[^\]]+\] retry: Retry in [\d.]+s: OperationalError", log
    )
    assert retried, "the store step did not meet the outage: the test proved nothing"
    for record, url in zip(records, urls, strict=True):
        assert record.status is JobStatus.COMPLETED, (record.status, record.error)
        assert record.text == stack.emulator.expected_transcript(url)
        assert record.stored_at is not None and record.cost_usd is not None
    assert api_duplicates(stack.emulator.create_counts(), urls) == 0
    reliability(
        f"PostgreSQL refusing connections for {OUTAGE_SECONDS:g} s while storing",
        jobs_in=len(ids),
        jobs_stored=len(records),
        api_duplicates=0,
        recover_s=recover_s,
        db_retries={"stt.store": len(retried)},
    )
