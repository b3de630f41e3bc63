"""No secret leaks (issue 6): after a full run with a distinctive API key and presigned URLs,
search everything the deployment writes outside the workers' memory.

* Redis: every command the broker received during the run (``MONITOR``: message bodies,
  base64-decoded; events; results), then every key left, type by type.
* PostgreSQL: every row of every table.
* The worker's log (at DEBUG, so requests/urllib3 debug output is included) and Flower's.
* Flower's task views: ``/api/tasks``, ``/api/task/info/<id>``, ``/api/workers``, the
  ``/tasks`` and ``/task/<id>`` pages, ``/metrics``.

The API key must be in none of them. Presigned query strings must be in no log, no Flower
view and no broker message (task arguments are ids); only the job's row holds the URL.
Each search is shown to work by finding something that must be there.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis
import sqlalchemy

from tasks.jobs import transcribe
from tasks.models import JobStatus
from tests.fixtures.emulator import EMULATOR_TEST_ARGS, EmulatorHandle
from tests.fixtures.flower import FlowerProcess
from tests.fixtures.services import RedisServer
from tests.fixtures.stack import Stack

_BASE64 = re.compile(rb"[A-Za-z0-9+/]{16,}={0,2}")


def decoded(blob: bytes) -> bytes:
    """``blob`` plus every base64 run in it decoded (kombu bodies), recursively once more."""
    out = [blob]
    for layer in range(2):
        found = []
        for match in _BASE64.finditer(out[-1] if layer else blob):
            chunk = match.group(0)
            try:
                found.append(base64.b64decode(chunk + b"=" * (-len(chunk) % 4), validate=True))
            except (binascii.Error, ValueError):
                continue
        if not found:
            break
        out.append(b"\n".join(found))
    return b"\n".join(out)


def redis_dump(server: RedisServer) -> bytes:
    """Every key and value of every database, whatever the type."""
    parts: list[bytes] = []
    databases = int(server.client().config_get("databases")["databases"])
    for db in range(databases):
        conn = redis.Redis(port=server.port, db=db)
        for key in conn.scan_iter(count=500):
            kind = conn.type(key).decode()
            value: Any
            if kind == "string":
                value = [conn.get(key)]
            elif kind == "list":
                value = conn.lrange(key, 0, -1)
            elif kind == "hash":
                value = [b for kv in conn.hgetall(key).items() for b in kv]
            elif kind == "set":
                value = list(conn.smembers(key))
            elif kind == "zset":
                value = [m for m, _ in conn.zrange(key, 0, -1, withscores=True)]
            else:  # streams and others: their dump is enough to search
                value = [conn.dump(key) or b""]
            parts.append(key + b"\n" + b"\n".join(v or b"" for v in value))
        conn.close()
    return decoded(b"\n".join(parts))


def database_dump(url: str) -> str:
    engine = sqlalchemy.create_engine(url)
    meta = sqlalchemy.MetaData()
    meta.reflect(engine)
    rows = []
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(sqlalchemy.select(table)):
                rows.append(f"{table.name}: " + " | ".join(map(str, row)))
    engine.dispose()
    return "\n".join(rows)


class BrokerMonitor:
    """``redis-cli MONITOR``: a transcript of every command the broker executes."""

    def __init__(self, server: RedisServer, path: Path) -> None:
        self.path = path
        self._log = path.open("wb")
        self.process = subprocess.Popen(
            ["redis-cli", "-p", str(server.port), "monitor"], stdout=self._log
        )

    def stop(self) -> bytes:
        self.process.terminate()
        self.process.wait(10)
        self._log.close()
        # MONITOR escapes binary as \xNN and quotes as \"; unescape what matters for search.
        return decoded(self.path.read_bytes().replace(b'\\"', b'"'))


def test_the_api_key_and_presigned_queries_are_nowhere_after_a_full_run(
    make_stack: Callable[..., Stack],
    emulator_factory: Callable[..., EmulatorHandle],
    postgres_url: str,
    tmp_path: Path,
) -> None:
    key = f"sk-secret-{uuid.uuid4().hex}"
    signature, credential = uuid.uuid4().hex, f"AKIA{uuid.uuid4().hex[:16].upper()}"
    query = f"X-Amz-Signature={signature}&X-Amz-Credential={credential}"
    api = emulator_factory(*EMULATOR_TEST_ARGS, "--api-key", key)
    stack = make_stack(
        db=postgres_url, start_worker=False, AIML_API_BASE=api.base_url, AIML_API_KEY=key
    )
    monitor = BrokerMonitor(stack.redis, tmp_path / "monitor.txt")
    worker = stack.start_worker("--concurrency", "4", "--pool", "threads", "--loglevel", "DEBUG")
    flower = FlowerProcess(
        env=stack.env,
        log_path=tmp_path / "flower.log",
        args=["--db", str(tmp_path / "flower"), "--logging=debug"],
    )
    flower.start()
    flower.wait_for_events()
    try:
        urls = [
            f"{api.sample_url(2)}?{query}",
            f"https://bucket.s3.amazonaws.com/calls/a.mp3?{query}",
            f"https://media.example.org/force-error/b.mp3?{query}",
            f"https://media.example.org/force-http-400/c.mp3?{query}",
            f"https://media.example.org/force-http-503x1/d.mp3?{query}",
        ]
        handles = [transcribe(url, "openai/gpt-4o-mini-transcribe") for url in urls]
        records = [h.wait(timeout=90) for h in handles]
        assert {r.status for r in records} == {
            JobStatus.COMPLETED,
            JobStatus.ERROR,
            JobStatus.FAILED,
        }
        views = list(_flower_views(flower, [r.id for r in records]))
    finally:
        flower.stop()
        worker.stop()
        broker_traffic = monitor.stop()

    broker = broker_traffic + b"\n" + redis_dump(stack.redis)
    rows = database_dump(postgres_url)
    logs = {"worker": worker.log(), "flower": flower.log()}
    flower_text = "\n".join(views)

    # Each search finds what must be there, so an empty search cannot pass for a clean one.
    assert all(r.id.encode() in broker for r in records), "job ids travel through the broker"
    assert b"stt.poll" in broker and b"task-succeeded" in broker
    assert b'"chain"' in broker, "kombu bodies are base64-decoded"
    assert all(r.url in rows for r in records), "the row keeps the full URL"
    assert all(r.id in logs["worker"] for r in records)
    assert "DEBUG" in logs["worker"] and "Visit me at" in logs["flower"]
    assert all(r.id in flower_text for r in records)

    assert key.encode() not in broker
    assert key not in rows
    for name, text in {**logs, "flower views": flower_text}.items():
        assert key not in text, name
        for secret in (signature, credential):
            assert secret not in text, (name, _around(text, secret))
    for secret in (signature, credential):
        assert secret.encode() not in broker, _around(broker.decode("latin-1"), secret)


def _flower_views(flower: FlowerProcess, job_ids: list[str]) -> Iterator[str]:
    tasks = flower.get("/api/tasks").json()
    yield json.dumps(tasks)
    for task_id in tasks:
        yield flower.get(f"/api/task/info/{task_id}").text
        yield flower.get(f"/task/{task_id}").text
    yield flower.get("/tasks").text
    yield flower.get("/tasks/datatable", draw=1, start=0, length=500).text
    yield flower.get("/api/workers", refresh="true").text
    yield flower.get("/metrics").text
    # submit and store of each job (stt.poll sends no events: tasks.monitoring.QuietAMQP)
    assert len(tasks) >= 2 * len(job_ids)


def _around(text: str, needle: str) -> str:
    at = text.find(needle)
    return text[max(0, at - 300) : at + 100]
