"""Issue 12, case 12: callbacks reach public addresses only, unless a network is allowed.

Refused at enqueue (``InvalidInput`` naming ``callback_url``, nothing stored or enqueued):
IP literals in loopback, private, link-local, multicast, reserved and unspecified ranges in
any spelling, internal names, CR/LF. Refused at send time, on the address the worker would
actually connect to: a name accepted at enqueue that resolves to such an address (DNS
rebinding). ``STT_CALLBACK_ALLOW_NETWORKS`` lets a deployment call back inside its own
network. And ``~/.netrc`` credentials are never sent to a receiver.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tasks.errors import InvalidInput
from tasks.jobs import transcribe
from tests.fixtures.receiver import Receiver, receiver
from tests.fixtures.services import ROOT, wait_for
from tests.fixtures.stack import Stack

__all__ = ["receiver"]  # the fixture, imported for pytest

MODEL = "aai/slam-1"
SECRET = "test-callback-secret-0123456789abcdef"
AUDIO = "https://media.example.org/a.mp3"

REFUSED = [
    "http://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1:6379/",
    "http://[::1]/hook",
    "http://2130706433/hook",  # 127.0.0.1 as one number
    "http://0/hook",  # 0.0.0.0
    "http://0x7f.1/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://10.0.0.5/hook",
    "http://192.168.1.1/hook",
    "http://224.0.0.1/hook",  # multicast
    "http://240.0.0.1/hook",  # reserved
    "http://localhost:8000/hook",
    "http://hooks.example/a\r\nX-Injected: 1",
    "http://hooks.example/a\nb",
]


def _final_callback(stack: Stack, job_id: str) -> None:
    def done() -> bool:
        record = stack.store.get(job_id)
        return record is not None and record.callback_status in ("delivered", "failed")

    wait_for(done, 90, f"job {job_id}'s callback to end")


@pytest.mark.parametrize("url", REFUSED)
def test_internal_callback_urls_are_refused_at_enqueue_naming_the_field(
    make_stack: Callable[..., Stack], url: str
) -> None:
    stack = make_stack(STT_CALLBACK_SECRET=SECRET, start_worker=False)
    with pytest.raises(InvalidInput) as info:
        transcribe(AUDIO, MODEL, callback_url=url)
    assert info.value.field == "callback_url"
    assert "STT_CALLBACK_ALLOW_NETWORKS" in str(info.value) or "control" in str(info.value)
    assert stack.broker_messages() == 0 and stack.store.list_jobs(limit=None) == []


def test_the_cli_refuses_a_metadata_callback_url(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(STT_CALLBACK_SECRET=SECRET, start_worker=False)
    proc = subprocess.run(
        [sys.executable, "-m", "workers.cli", "submit", AUDIO, "--callback-url", REFUSED[0]],
        env=stack.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "'callback_url'" in proc.stderr
    assert "169.254.169.254 (link-local)" in proc.stderr
    assert stack.store.list_jobs(limit=None) == []


def test_allowed_networks_are_accepted_at_enqueue(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(
        STT_CALLBACK_SECRET=SECRET,
        STT_CALLBACK_ALLOW_NETWORKS="127.0.0.0/8, 10.0.0.0/8",
        start_worker=False,
    )
    for url in ["http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://web:8000/hook"]:
        transcribe(AUDIO, MODEL, callback_url=url)
    with pytest.raises(InvalidInput):  # not in the allowed networks
        transcribe(AUDIO, MODEL, callback_url="http://169.254.169.254/")
    assert len(stack.store.list_jobs(limit=None)) == 3


def test_the_worker_checks_the_address_it_connects_to(
    make_stack: Callable[..., Stack], receiver: Receiver
) -> None:
    """The web app allowed loopback (its settings), the worker does not: as if a public
    name had been re-pointed at 127.0.0.1 after enqueue. Nothing reaches the receiver."""
    stack = make_stack(
        STT_CALLBACK_SECRET=SECRET, STT_CALLBACK_ALLOW_NETWORKS="127.0.0.0/8", start_worker=False
    )
    stack.start_worker(env={"STT_CALLBACK_ALLOW_NETWORKS": ""})
    port = receiver.server.server_address[1]
    by_name = transcribe(AUDIO, MODEL, callback_url=f"http://localhost:{port}/name")
    by_ip = transcribe(AUDIO, MODEL, callback_url=receiver.url("/ip"))
    for handle, shown in [(by_name, "localhost resolves to"), (by_ip, "127.0.0.1 (loopback)")]:
        _final_callback(stack, handle.id)
        record = stack.store.get(handle.id)
        assert record is not None and record.callback_status == "failed"
        assert record.callback_attempts == 1, "a refused address is not retried"
        assert shown in (record.callback_error or ""), record.callback_error
        assert "STT_CALLBACK_ALLOW_NETWORKS" in (record.callback_error or "")
    assert receiver.deliveries == []


def test_an_allowed_name_is_connected_by_its_checked_address_without_netrc_credentials(
    make_stack: Callable[..., Stack], receiver: Receiver, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    netrc = home / ".netrc"
    netrc.write_text(
        "machine localhost login stt password leaked-from-netrc\n"
        "machine 127.0.0.1 login stt password leaked-from-netrc\n"
    )
    netrc.chmod(0o600)
    stack = make_stack(
        STT_CALLBACK_SECRET=SECRET, STT_CALLBACK_ALLOW_NETWORKS="127.0.0.0/8", start_worker=False
    )
    stack.start_worker(env={"HOME": str(home), "NETRC": str(netrc)})
    port = receiver.server.server_address[1]
    handles = [
        transcribe(AUDIO, MODEL, callback_url=f"http://localhost:{port}/name"),
        transcribe(AUDIO, MODEL, callback_url=receiver.url("/ip")),
    ]
    for handle in handles:
        _final_callback(stack, handle.id)
        record = stack.store.get(handle.id)
        assert record is not None and record.callback_status == "delivered", record
    (by_name,) = receiver.at("/name")
    assert by_name.headers["Host"] == f"localhost:{port}"  # the name, on the checked IP
    secret = base64.b64encode(b"stt:leaked-from-netrc").decode()
    for delivery in receiver.deliveries:
        assert "Authorization" not in delivery.headers
        assert secret not in str(delivery.headers)
