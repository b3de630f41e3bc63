"""Domain metrics for Prometheus: what the jobs did, not what Celery did (Flower has that).

Every metric is defined here, and every other module reports through one call of a
function below (a one-line hook), so the names, labels and buckets live in one place and
docs/operations.md, the dashboard and the alert rules (deploy/) can be checked against
``EXPORTED``.

Served over HTTP on ``STT_METRICS_PORT`` (off when unset) by a worker's main process and by
beat, started from Celery's ``worker_init`` / ``beat_init`` signals; on a node running
several worker processes (``stt-workers worker --processes N``) by their supervisor instead
(``serve_node``), summing them from a multiprocess folder. With the threads (or solo,
gevent) pool one process holds every value. With prefork the tasks run in child
processes, so the client's multiprocess mode is required: ``PROMETHEUS_MULTIPROC_DIR``
names a folder where each process keeps its values in files, and the main process sums
them on each scrape. That variable must be set before the process starts (the client
decides at import); a prefork worker with ``STT_METRICS_PORT`` but without it refuses to
start rather than export numbers that miss every task.

Gauges of the whole fleet (jobs in flight, jobs waiting) are not counted in processes,
which come and go: they are read from the database, the source of truth, at each scrape.
Every worker exports the same value; aggregate them with ``max``.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

# Before prometheus_client is imported: multiprocess mode writes into this folder from the
# first labelled value on, so it must exist. The client takes a variable that is set but
# empty (as docker-compose.yml passes an unset one) for "on, in the working directory".
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
else:
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

import prometheus_client
import requests
from celery.signals import beat_init, before_task_publish, worker_init
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from urllib3.exceptions import ReadTimeoutError

from tasks.errors import ConfigurationError, RateLimited, RequestTimeout, STTError
from tasks.settings import get_settings

if TYPE_CHECKING:
    from tasks.steps import Outcome
    from tasks.store import JobRecord

__all__ = [
    "EXPORTED",
    "api_answered",
    "callback_attempt",
    "count_unanswered",
    "detection_lag",
    "job_stored",
    "limit_wait",
    "serve_node",
    "start_server",
    "sweep_redrove",
]

log = logging.getLogger(__name__)

# The client picks its mode when first imported, which in a worker is often before this
# module (Celery loads Flower's command plugin, and Flower imports the client): pick it
# again from the environment as settled above, for the metrics defined below.
values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]

# Created-at series double every counter for nothing a dashboard uses (and multiprocess
# mode never exports them, so a dashboard relying on them would break under prefork).
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# A new model id appears as a label the first time it is used; past this many distinct ids
# in one process the rest are counted as "other", so a client sending garbage model ids
# cannot grow the series without bound.
MAX_MODEL_LABELS = 50
OTHER_MODEL = "other"

# Jobs take from seconds (short audio) to the 30 min poll deadline.
JOB_LATENCY_BUCKETS = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)
# The default schedule (10 s cap) puts detection lag mostly under 10 s (docs/benchmarks.md).
DETECTION_LAG_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300)
POLLS_BUCKETS = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233)
API_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

JOBS_FINISHED = Counter(
    "stt_jobs_finished",
    "Jobs stored in a final status, by model and status (completed/error/failed/timeout).",
    ["model", "status"],
)
JOB_LATENCY = Histogram(
    "stt_job_latency_seconds",
    "Enqueue (transcribe()) to stored, by model and final status.",
    ["model", "status"],
    buckets=JOB_LATENCY_BUCKETS,
)
DETECTION_LAG = Histogram(
    "stt_detection_lag_seconds",
    "Server finish to stored, for jobs the server finished (completed/error). The API does "
    "not say when a job finished: it is taken as the midpoint between the last answer that "
    "said pending and the first that said finished.",
    buckets=DETECTION_LAG_BUCKETS,
)
POLLS_PER_JOB = Histogram(
    "stt_polls_per_job",
    "Polls a job needed before it was stored (jobs the API accepted).",
    buckets=POLLS_BUCKETS,
)
API_REQUESTS = Counter(
    "stt_api_requests",
    "Requests sent to the AI/ML API, by endpoint (create/get) and HTTP status; 'timeout' and "
    "'connection_error' when no answer came.",
    ["endpoint", "status"],
)
API_LATENCY = Histogram(
    "stt_api_request_seconds",
    "Time from sending a request to the API to its answer (or to giving up on it).",
    ["endpoint"],
    buckets=API_LATENCY_BUCKETS,
)
LIMIT_WAITS = Counter(
    "stt_limit_waits",
    "Steps told to wait by a shared limit: 'rate' (STT_API_RATE_LIMIT) or 'in_flight' "
    "(STT_MAX_IN_FLIGHT). Nothing was sent; the step re-schedules itself.",
    ["limit"],
)
LIMIT_WAIT_SECONDS = Counter(
    "stt_limit_wait_seconds",
    "Seconds of waiting the shared limits handed out.",
    ["limit"],
)
SWEEPER_REDRIVES = Counter(
    "stt_sweeper_redrives",
    "Steps the sweeper enqueued again because a job's message was lost or overdue.",
    ["step"],
)
CALLBACK_DELIVERIES = Counter(
    "stt_callback_deliveries",
    "Completion-callback attempts by outcome: delivered (2xx), retry (failed, will retry), "
    "failed (failed for good, or not sent: no STT_CALLBACK_SECRET).",
    ["outcome"],
)
COST_USD = Counter(
    "stt_cost_usd",
    "Estimated cost of completed jobs in USD (unpriced jobs add nothing).",
    ["model"],
)
AUDIO_SECONDS = Counter(
    "stt_audio_seconds",
    "Seconds of audio transcribed by completed jobs (as the API reported them).",
    ["model"],
)
BEAT_SCHEDULED = Counter(
    "stt_beat_scheduled",
    "Periodic tasks beat sent (stt.sweep every 60 s): flat means no sweeper.",
    ["task"],
)

_STEPS = ("submit", "poll", "store", "callback")
_CALLBACK_OUTCOMES = ("delivered", "retry", "failed")
_LIMITS = ("rate", "in_flight")
# Known label values start at 0, so rate() and increase() see the first event.
for _step in _STEPS:
    SWEEPER_REDRIVES.labels(_step)
for _outcome in _CALLBACK_OUTCOMES:
    CALLBACK_DELIVERIES.labels(_outcome)
for _limit in _LIMITS:
    LIMIT_WAITS.labels(_limit)
    LIMIT_WAIT_SECONDS.labels(_limit)

# Every series a scrape can show, with its labels: what the dashboard and the alert rules
# may use (tests/unit/test_metrics.py checks them against it).
EXPORTED: dict[str, tuple[str, ...]] = {
    "stt_jobs_finished_total": ("model", "status"),
    "stt_job_latency_seconds_bucket": ("model", "status", "le"),
    "stt_job_latency_seconds_sum": ("model", "status"),
    "stt_job_latency_seconds_count": ("model", "status"),
    "stt_detection_lag_seconds_bucket": ("le",),
    "stt_detection_lag_seconds_sum": (),
    "stt_detection_lag_seconds_count": (),
    "stt_polls_per_job_bucket": ("le",),
    "stt_polls_per_job_sum": (),
    "stt_polls_per_job_count": (),
    "stt_api_requests_total": ("endpoint", "status"),
    "stt_api_request_seconds_bucket": ("endpoint", "le"),
    "stt_api_request_seconds_sum": ("endpoint",),
    "stt_api_request_seconds_count": ("endpoint",),
    "stt_limit_waits_total": ("limit",),
    "stt_limit_wait_seconds_total": ("limit",),
    "stt_sweeper_redrives_total": ("step",),
    "stt_callback_deliveries_total": ("outcome",),
    "stt_cost_usd_total": ("model",),
    "stt_audio_seconds_total": ("model",),
    "stt_beat_scheduled_total": ("task",),
    "stt_jobs_in_flight": (),
    "stt_jobs_waiting": (),
}

_models_lock = threading.Lock()
_models: set[str] = set()


def _model(model: str) -> str:
    with _models_lock:
        if model in _models:
            return model
        if len(_models) < MAX_MODEL_LABELS:
            _models.add(model)
            return model
    return OTHER_MODEL


# -- the hooks ------------------------------------------------------------------------------


def _endpoint(path: str) -> str:
    return "create" if path.endswith("/create") else "get"


def api_answered(path: str, status: int, seconds: float) -> None:
    """The API answered a request to ``path`` with ``status`` after ``seconds``."""
    endpoint = _endpoint(path)
    API_REQUESTS.labels(endpoint, str(status)).inc()
    API_LATENCY.labels(endpoint).observe(seconds)


P = ParamSpec("P")
R = TypeVar("R")


def count_unanswered(call: Callable[P, R]) -> Callable[P, R]:
    """Decorate the client's one request method: count the requests that got no answer.

    Answered ones are counted where the status is known (``api_answered``). A request
    with no answer leaves as an ``STTError`` without a status code; the transport's own
    exception, kept as its context, tells a timeout from a lost connection. ``RateLimited``
    was never sent (``limit_wait`` counted it).
    """

    @functools.wraps(call)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.monotonic()
        try:
            return call(*args, **kwargs)
        except RateLimited:
            raise
        except STTError as exc:
            if exc.status_code is None:
                path = str(args[2] if len(args) > 2 else kwargs.get("path", ""))
                endpoint = _endpoint(path)
                API_REQUESTS.labels(endpoint, _no_answer(exc)).inc()
                API_LATENCY.labels(endpoint).observe(time.monotonic() - started)
            raise

    return wrapper


def _no_answer(exc: BaseException) -> str:
    if isinstance(exc, RequestTimeout):  # the total deadline (tasks/deadline.py)
        return "timeout"
    cause = exc.__context__
    if isinstance(cause, requests.Timeout) or (
        isinstance(cause, requests.ConnectionError)
        and any(isinstance(arg, ReadTimeoutError) for arg in cause.args)
    ):
        return "timeout"
    return "connection_error"


def limit_wait(limit: str, seconds: float) -> None:
    """A shared limit (``rate`` or ``in_flight``) told a step to wait ``seconds``."""
    LIMIT_WAITS.labels(limit).inc()
    LIMIT_WAIT_SECONDS.labels(limit).inc(seconds)


def sweep_redrove(counts: Mapping[str, int]) -> None:
    """The sweeper enqueued ``counts[step]`` steps again."""
    for step, n in counts.items():
        SWEEPER_REDRIVES.labels(step).inc(n)


def callback_attempt(status: int | None, *, last: bool) -> None:
    """One callback attempt ended with HTTP ``status`` (None: no answer or not sent);
    ``last``: no further attempt will follow."""
    if status is not None and 200 <= status < 300:
        CALLBACK_DELIVERIES.labels("delivered").inc()
    else:
        CALLBACK_DELIVERIES.labels("failed" if last else "retry").inc()


def detection_lag(stored: float, seen_finished: float, pending_at: float | None) -> float:
    """Seconds from the server's finish to ``stored`` (all epoch seconds).

    The server finished after the last answer that said pending (``pending_at``) and by
    the first that said finished (``seen_finished``); the midpoint is the estimate, off by
    at most half that gap. Without ``pending_at`` (a job the sweeper re-drove) the first
    sighting stands in for the finish: a lower bound.
    """
    finish = seen_finished
    if pending_at is not None and pending_at < seen_finished:
        finish = (pending_at + seen_finished) / 2
    return max(0.0, stored - finish)


def job_stored(record: JobRecord | None, outcome: Outcome, now: datetime) -> None:
    """``stt.store`` wrote (or found) the job's final row at ``now``; count it once.

    A redelivered store finds the row written before (its ``stored_at`` is not ``now``)
    and counts nothing, so each job is counted exactly once however often it is stored.
    """
    if record is None or record.stored_at != now or not record.done:
        return
    model, status = _model(record.model), record.status.value
    JOBS_FINISHED.labels(model, status).inc()
    JOB_LATENCY.labels(model, status).observe((now - record.enqueued_at).total_seconds())
    if record.generation_id is not None:
        POLLS_PER_JOB.observe(record.polls)
    if record.finished_at is not None and record.server_status is not None:
        lag = detection_lag(now.timestamp(), record.finished_at.timestamp(), outcome.pending_at)
        DETECTION_LAG.observe(lag)
    if record.cost_usd is not None:
        COST_USD.labels(model).inc(record.cost_usd)
    if record.audio_seconds is not None:
        AUDIO_SECONDS.labels(model).inc(record.audio_seconds)


# -- serving ------------------------------------------------------------------------------


class StoreGauges(Collector):
    """Jobs in flight and waiting, counted in the database at each scrape."""

    def collect(self) -> Iterable[Metric]:
        try:
            in_flight, waiting = _count_open_jobs()
        except Exception as exc:  # a scrape must not fail because the database did
            log.warning("metrics: cannot count jobs in the database: %s", exc)
            return
        yield GaugeMetricFamily(
            "stt_jobs_in_flight",
            "Jobs created at the API and not yet seen finished (from the database).",
            value=in_flight,
        )
        yield GaugeMetricFamily(
            "stt_jobs_waiting",
            "Jobs accepted by transcribe() and not yet created at the API (from the database).",
            value=waiting,
        )


def _count_open_jobs() -> tuple[int, int]:
    """(jobs in flight, jobs waiting): one query on the status index."""
    from sqlalchemy import func, select

    from tasks import runtime
    from tasks.models import JobStatus
    from tasks.schema import JobRow

    submitted, pending = JobStatus.SUBMITTED.value, JobStatus.PENDING.value
    query = (
        select(JobRow.status, func.count())
        .where(
            JobRow.status.in_([submitted, pending]),
            # Seen finished, not yet stored: no longer at the API.
            (JobRow.status == pending) | JobRow.finished_at.is_(None),
        )
        .group_by(JobRow.status)
    )
    with runtime.get_store().session() as session:
        counts: dict[str, int] = dict(session.execute(query).tuples().all())
    return counts.get(submitted, 0), counts.get(pending, 0)


def _multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def start_server(port: int, *, store_gauges: bool) -> None:
    """Serve ``/metrics`` on ``port`` (all interfaces) from a daemon thread."""
    registry: CollectorRegistry = prometheus_client.REGISTRY
    if _multiprocess_dir() is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    if store_gauges:
        registry.register(StoreGauges())
    prometheus_client.start_http_server(port, registry=registry)
    log.info("metrics: serving http://0.0.0.0:%d/metrics", port)


def serve_node() -> dict[str, str]:
    """Serve the sum of several worker processes on one node (``workers/supervise.py``).

    Each of them is a Celery worker whose main process would serve ``STT_METRICS_PORT``
    itself, and only one can bind it. So the supervisor serves it, from the client's
    multiprocess folder (``PROMETHEUS_MULTIPROC_DIR``, else a temporary one), and the
    workers only write there. Returns the environment for the workers ({} when off).
    """
    port = get_settings().metrics_port
    if not port:
        return {}
    folder = _multiprocess_dir()
    if folder is None:
        folder = tempfile.mkdtemp(prefix="stt-metrics-")
        atexit.register(shutil.rmtree, folder, True)
    Path(folder).mkdir(parents=True, exist_ok=True)
    _clear_stale_files(folder)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
    registry.register(StoreGauges())
    prometheus_client.start_http_server(port, registry=registry)
    log.info("metrics: serving the node's workers on http://0.0.0.0:%d/metrics", port)
    return {"PROMETHEUS_MULTIPROC_DIR": folder, "STT_METRICS_PORT": ""}


def _clear_stale_files(folder: str) -> None:
    """Remove values left by processes of an earlier run (the client requires it); this
    process's own files, opened at import, stay."""
    own = f"_{os.getpid()}.db"
    for path in Path(folder).glob("*.db"):
        if not path.name.endswith(own):
            path.unlink(missing_ok=True)


def _is_prefork(pool_cls: Any) -> bool:
    from celery import concurrency

    implementation = concurrency.get_implementation(pool_cls)
    return str(implementation.__module__).endswith(".prefork")


def _serve_from_worker(sender: Any = None, **_: Any) -> None:
    port = get_settings().metrics_port
    if not port:
        return
    folder = _multiprocess_dir()
    if folder is None and _is_prefork(getattr(sender, "pool_cls", "prefork")):
        error = ConfigurationError(
            "PROMETHEUS_MULTIPROC_DIR",
            "must name a writable folder for STT_METRICS_PORT with the prefork pool "
            "(each child process keeps its metrics there; see docs/operations.md)",
        )
        # Celery logs and swallows an Exception raised by a signal handler: exit instead.
        raise SystemExit(f"error: {error}")
    if folder is not None:
        _clear_stale_files(folder)
    start_server(port, store_gauges=True)


def _count_scheduled(sender: Any = None, **_: Any) -> None:
    BEAT_SCHEDULED.labels(str(sender)).inc()


def _serve_from_beat(**_: Any) -> None:
    port = get_settings().metrics_port
    if not port:
        return
    folder = _multiprocess_dir()
    if folder is not None:
        _clear_stale_files(folder)
    BEAT_SCHEDULED.labels("stt.sweep")  # at 0 until the first one is sent
    before_task_publish.connect(_count_scheduled, weak=False)
    # Beat has no database in docker-compose.yml: the job gauges come from the workers.
    start_server(port, store_gauges=False)


worker_init.connect(_serve_from_worker, weak=False)
beat_init.connect(_serve_from_beat, weak=False)
