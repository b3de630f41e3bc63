"""Process helpers shared by the benchmarks: Redis, PostgreSQL, the emulator, a worker.

Every benchmark starts its own services (a private ``redis-server`` on a free port, a fresh
PostgreSQL database, the emulator as a subprocess, real worker processes), so two runs
never share state and a number is never an artefact of a leftover queue. The Redis and
environment helpers are the test suite's own (``tests.fixtures.services``), so the
benchmarks run the stack exactly as the end-to-end tests do.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fixtures.rabbitmq import RabbitMQ
from tests.fixtures.services import (
    POSTGRES_URL,
    RedisServer,
    free_port,
    stack_env,
    start_redis,
    wait_for,
)

__all__ = [
    "API_KEY",
    "BROKERS",
    "REPO_ROOT",
    "BrokerReading",
    "BrokerUnderTest",
    "Emulator",
    "RedisServer",
    "Worker",
    "activate",
    "free_port",
    "fresh_postgres",
    "machine_note",
    "markdown_table",
    "metric_value",
    "private_broker",
    "rss_mb",
    "start_redis",
    "text_table",
    "update_doc",
    "wait_for",
    "worker_env",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
API_KEY = "sk-emulator-key"
DOC = REPO_ROOT / "docs" / "benchmarks.md"


def rss_mb(pid: int) -> float:
    """Resident memory of one process, from /proc (no psutil needed)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the prefork pool's processes)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Emulator:
    """``python -m workers.emulator`` on a free port, with /proc readings of its usage."""

    def __init__(self, *args: str) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="bench-emulator-", suffix=".log")  # noqa: SIM115
        command = [sys.executable, "-m", "workers.emulator", "--port", "0", *args]
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.base_url = self._wait_ready()

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = Path(self.log.name).read_text(errors="replace")
            if "listening on " in text:
                return text.split("listening on ", 1)[1].split()[0]
            if self.process.poll() is not None:
                raise RuntimeError(f"emulator exited:\n{text}")
            time.sleep(0.05)
        raise RuntimeError("emulator did not start")

    def admin(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """GET (or POST ``body`` to) ``/_emulator/<path>`` and decode the JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.base_url}/_emulator/{path}",
            data=data,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def rss_mb(self) -> float:
        return rss_mb(self.process.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


# -- brokers -------------------------------------------------------------------------------

BROKERS = ("redis", "rabbitmq")


@dataclass(frozen=True)
class BrokerReading:
    """What the broker holds for one run, at one instant.

    ``queued``: ready on the stt queue; ``held``: delivered to a worker, not yet acked (on
    Redis that includes every countdown a worker holds in memory); ``delayed``: waiting in
    the broker's own delay queues (RabbitMQ only). ``memory_mb`` is the broker's: Redis's
    ``used_memory`` (a private server), or the RabbitMQ *node's* total (shared with other
    vhosts on this machine); ``queues_mb`` the run's own queues (RabbitMQ's per-queue
    ``memory``; Redis: same as ``memory_mb``); ``disk_mb`` RabbitMQ's quorum-queue data
    folder (the whole node's; Redis here persists nothing).
    """

    queued: int
    held: int
    delayed: int
    memory_mb: float
    queues_mb: float
    disk_mb: float


class BrokerUnderTest:
    """A private broker for one run: its URL, readings and clean-up."""

    kind: str
    url: str

    def read(self) -> BrokerReading:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _Redis(BrokerUnderTest):
    kind = "redis"

    def __init__(self, workdir: Path) -> None:
        self.server = start_redis(workdir)
        self.url = self.server.url
        self.client = self.server.client()

    def read(self) -> BrokerReading:
        memory = int(self.client.info("memory")["used_memory"]) / 2**20
        return BrokerReading(
            queued=int(self.client.llen("stt")),
            held=int(self.client.hlen("unacked")),
            delayed=0,
            memory_mb=memory,
            queues_mb=memory,
            disk_mb=0.0,
        )

    def close(self) -> None:
        self.server.process.terminate()
        self.server.process.wait(10)


class _RabbitMQ(BrokerUnderTest):
    """The machine's RabbitMQ, in a private vhost deleted at the end (as the tests do).

    Each reading runs ``rabbitmqctl`` twice (~0.5 s of CPU each, an Erlang VM boot): sample
    every 10 s or more.
    """

    kind = "rabbitmq"

    def __init__(self) -> None:
        binary = shutil.which("rabbitmqctl")
        if binary is None:
            raise RuntimeError("rabbitmqctl is not installed: this benchmark needs RabbitMQ")
        self.ctl = RabbitMQ(binary)
        self.vhost = self.ctl.add_vhost()
        self.url = self.ctl.url(self.vhost)
        status = json.loads(self.ctl.ctl("status", "--formatter", "json"))
        self.quorum_dir = Path(status.get("raft_data_directory") or "")

    def read(self) -> BrokerReading:
        rows = json.loads(
            self.ctl.ctl(
                "list_queues",
                "-p",
                self.vhost,
                "--formatter",
                "json",
                "name",
                "messages_ready",
                "messages_unacknowledged",
                "memory",
            )
            or "[]"
        )
        status = json.loads(self.ctl.ctl("status", "--formatter", "json"))
        queued = held = delayed = 0
        for row in rows:
            if row["name"] == "stt":
                queued, held = int(row["messages_ready"]), int(row["messages_unacknowledged"])
            elif row["name"].startswith("celery_delayed_"):
                delayed += int(row["messages_ready"]) + int(row["messages_unacknowledged"])
        return BrokerReading(
            queued=queued,
            held=held,
            delayed=delayed,
            memory_mb=int(status["memory"]["total"]["rss"]) / 2**20,
            queues_mb=sum(int(row.get("memory") or 0) for row in rows) / 2**20,
            disk_mb=_folder_bytes(self.quorum_dir) / 2**20,
        )

    def close(self) -> None:
        self.ctl.delete_vhost(self.vhost)
        self.ctl.finish()


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


@contextlib.contextmanager
def private_broker(kind: str, workdir: Path) -> Iterator[BrokerUnderTest]:
    """A private ``redis-server``, or a private vhost on the machine's RabbitMQ (deleted
    afterwards, with every queue and delay queue in it)."""
    broker: BrokerUnderTest = _Redis(workdir / "redis") if kind == "redis" else _RabbitMQ()
    try:
        yield broker
    finally:
        broker.close()


def metric_value(port: int, name: str, **labels: str) -> float:
    """The sum of a worker's Prometheus series ``name`` carrying ``labels`` (0 if none)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    wanted = {f'{k}="{v}"' for k, v in labels.items()}
    total = 0.0
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        metric, _, rest = series.partition("{")
        if metric == name and wanted <= set(rest.rstrip("}").split(",")):
            total += float(value)
    return total


@contextlib.contextmanager
def fresh_postgres(*, migrated: bool = True) -> Iterator[str]:
    """A new PostgreSQL database for one run, migrated (as a deployment does) unless
    ``migrated`` is false (an older checkout migrates it to its own schema), dropped
    afterwards."""
    import sqlalchemy

    from tasks import migrate

    admin = sqlalchemy.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"stt_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = sqlalchemy.engine.make_url(POSTGRES_URL).set(database=name)
    try:
        if migrated:
            migrate.upgrade(url.render_as_string(hide_password=False))
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def worker_env(
    *, broker_url: str, database_url: str, api_base: str, **extra: str
) -> dict[str, str]:
    """The worker's environment: the tests' one, with the poll schedule left at its defaults
    unless ``extra`` sets it (the tests shrink it to 0.2-1 s; a benchmark must not)."""
    env = stack_env(
        broker_url=broker_url, database_url=database_url, api_base=api_base, api_key=API_KEY
    )
    for name in ("STT_POLL_FIRST_DELAY", "STT_POLL_FACTOR", "STT_POLL_MAX_DELAY"):
        env.pop(name, None)
    env.update(extra)
    return env


def activate(env: Mapping[str, str]) -> Any:
    """Configure *this* process as the web app that enqueues (same broker and database)."""
    from celery import Celery

    from tasks import runtime
    from tasks.celeryconfig import celery_config
    from tasks.settings import get_settings

    for key in [k for k in os.environ if k.startswith(("STT_", "AIML_"))]:
        del os.environ[key]
    os.environ.update({k: v for k, v in env.items() if k.startswith(("STT_", "AIML_"))})
    get_settings.cache_clear()
    runtime.reset()
    app = Celery("stt-bench", set_as_current=True, include=["tasks.pipeline", "bench.noop"])
    app.config_from_object(celery_config(get_settings()))
    app.set_default()
    return app


class Worker:
    """A real Celery worker process running ``bench.worker_app`` (our tasks + the no-ops)."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        pool: str = "threads",
        concurrency: int = 16,
        loglevel: str = "INFO",
        log_path: Path | None = None,
        prefix: Sequence[str] = (),
        name: str | None = None,
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="bench-worker-", suffix=".log")[1])
        command = [
            *(prefix or [sys.executable]),
            "-m",
            "celery",
            "-A",
            "bench.worker_app",
            "worker",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            "--queues=stt",
            "--without-gossip",
            "--without-mingle",
            f"--hostname={name or 'bench-' + uuid.uuid4().hex[:6]}@%h",
        ]
        self.log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command, env=dict(env), cwd=cwd, stdout=self.log_file, stderr=subprocess.STDOUT
        )
        wait_for(self._ready, 60, "the worker to be ready", 0.1)

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"worker exited:\n{self.log()[-3000:]}")
        return " ready." in self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_mb(self) -> float:
        """The main process plus any pool children (prefork)."""
        pids = [self.process.pid, *children(self.process.pid)]
        return sum(rss_mb(p) for p in pids)

    def cpu_seconds(self) -> float:
        """User + system CPU of the main process and any pool children."""
        pids = [self.process.pid, *children(self.process.pid)]
        return sum(cpu_seconds(p) for p in pids)

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log_file.close()


# -- reporting -----------------------------------------------------------------------------


def machine_note() -> str:
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} CPUs (shared with other work: load average {load:.1f} at start), "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(str(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---:" for _ in headers) + "|")
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def update_doc(name: str, body: str) -> None:
    """Replace the generated part of ``docs/benchmarks.md`` for benchmark ``name``.

    The generated part sits between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``;
    the prose around it (conclusions) is hand-written and left alone.
    """
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else f"{text}\n{block}\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def command_line() -> str:
    """The command that produced this run, for the document."""
    module = Path(sys.argv[0]).stem
    return " ".join([".venv/bin/python -m", f"bench.{module}", *sys.argv[1:]])
