"""The embedded broker delivers every message whole and once, with consumers racing writers.

kombu's own filesystem transport let a consumer read a message file that was created but
not yet written (the demo's worker died with JSONDecodeError). Here two consumers poll
the folder as fast as they can while a producer writes large messages.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from kombu import Connection, Exchange, Queue

from tasks.celeryconfig import FILESYSTEM_TRANSPORT, _filesystem_options

MESSAGES = 300
PADDING = "x" * 200_000  # large: a write takes long enough to be caught half-done


def connection(folder: Path) -> Connection:
    return Connection(
        "filesystem://",
        transport=FILESYSTEM_TRANSPORT,
        transport_options=_filesystem_options(f"filesystem://{folder}"),
    )


def test_every_message_arrives_whole_and_once(tmp_path: Path) -> None:
    exchange = Exchange("stt", type="direct")
    queue = Queue("stt", exchange, routing_key="stt")
    received: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    done = threading.Event()
    lock = threading.Lock()

    def consume() -> None:
        try:
            with connection(tmp_path) as conn:
                simple = conn.SimpleQueue(queue)
                while not (done.is_set() and not simple.qsize()):
                    try:
                        message = simple.get(block=True, timeout=0.05)
                    except simple.Empty:
                        continue
                    message.ack()
                    with lock:
                        received.append(message.payload)
        except BaseException as exc:  # reported below: a thread's error must fail the test
            errors.append(exc)

    consumers = [threading.Thread(target=consume) for _ in range(2)]
    for thread in consumers:
        thread.start()
    with connection(tmp_path) as conn:
        producer = conn.Producer(serializer="json")
        for i in range(MESSAGES):
            producer.publish(
                {"i": i, "pad": PADDING}, exchange=exchange, routing_key="stt", declare=[queue]
            )
    done.set()
    for thread in consumers:
        thread.join(120)
    assert not errors, errors
    assert sorted(m["i"] for m in received) == list(range(MESSAGES))  # each exactly once
    assert all(m["pad"] == PADDING for m in received)  # and whole
    # Nothing is left behind: no claimed or half-written files.
    leftovers = [p.name for p in tmp_path.rglob("*") if p.is_file() and "exchange" not in p.name]
    assert leftovers == []
