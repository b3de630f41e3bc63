"""STTClient over real HTTP, against a tiny local server that answers what each test scripts.

This is the HTTP seam: status codes, bodies, slow answers and dropped connections really
happen on a socket, so the mapping to our errors is tested through ``requests`` and urllib3.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from tasks.client import STTClient
from tasks.envelopes import MAX_MESSAGE_CHARS
from tasks.errors import ConfigurationError, PermanentError, STTError, TransientError
from tasks.settings import Settings

KEY = "sk-test-SECRET-0123456789abcdef"


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict[str, Any] = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    sleep: float = 0.0
    drop: str | None = None  # "before": close without answering; "midway": cut the body


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int


class FakeAPI(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.replies: dict[tuple[str, str], Reply] = {}
        self.seen: list[Seen] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def reply(self, method: str, path: str, reply: Reply) -> None:
        self.replies[(method, path)] = reply

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up early (the huge-body test) is expected, not news.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's pooling is observable
    server: FakeAPI

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append(
            Seen(self.command, self.path, dict(self.headers), body, self.client_address[1])
        )
        reply = self.server.replies.get((self.command, self.path), Reply(404, b'{"message":"?"}'))
        time.sleep(reply.sleep)
        if reply.drop == "before":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        payload = reply.body
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        data = payload.encode() if isinstance(payload, str) else payload
        self.send_response(reply.status)
        for name, value in {"Content-Type": "application/json", **reply.headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data) * (2 if reply.drop else 1)))
        self.end_headers()
        self.wfile.write(data)
        if reply.drop == "midway":  # promised twice the bytes, then hang up
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    server = FakeAPI()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(api: FakeAPI) -> Iterator[STTClient]:
    with STTClient(KEY, api.url, connect_timeout=1.0, read_timeout=0.5) as c:
        yield c


def _raised(call: Any) -> STTError:
    with pytest.raises(STTError) as info:
        call()
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    return info.value


def test_create_posts_json_with_bearer_and_omits_none(api: FakeAPI, client: STTClient) -> None:
    api.reply("POST", "/v1/stt/create", Reply(201, {"generation_id": "g-1", "status": "queued"}))
    generation = client.create(
        model="openai/gpt-4o-mini-transcribe", url="https://x/a.mp3", language="en"
    )
    assert (generation.generation_id, generation.status) == ("g-1", "queued")
    [seen] = api.seen
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert seen.headers["Content-Type"] == "application/json"
    assert json.loads(seen.body) == {
        "model": "openai/gpt-4o-mini-transcribe",
        "url": "https://x/a.mp3",
        "language": "en",
    }


def test_create_sends_every_option_and_accepts_a_bare_id(api: FakeAPI, client: STTClient) -> None:
    api.reply("POST", "/v1/stt/create", Reply(200, {"generation_id": "g-2"}))
    generation = client.create(model="m", url="u", language="de", prompt="p", temperature=0.0)
    assert generation.status == "queued"
    assert json.loads(api.seen[0].body) == {
        "model": "m",
        "url": "u",
        "language": "de",
        "prompt": "p",
        "temperature": 0.0,
    }


def test_get_accepts_201_and_parses_the_result(api: FakeAPI, client: STTClient) -> None:
    result = {"text": "hi", "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}
    api.reply(
        "GET",
        "/v1/stt/g-1",
        Reply(
            201,
            {"generation_id": "g-1", "status": "completed", "result": result},
            {"x-request-id": "r-9"},
        ),
    )
    generation = client.get("g-1")
    assert generation.result == result
    assert generation.request_id == "r-9"


def test_generation_id_is_quoted_in_the_path(api: FakeAPI, client: STTClient) -> None:
    api.reply("GET", "/v1/stt/a%2Fb%20c%3F", Reply(200, {"id": "a/b c?", "status": "queued"}))
    assert client.get("a/b c?").generation_id == "a/b c?"
    assert api.seen[0].path == "/v1/stt/a%2Fb%20c%3F"


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_base_url_forms(api: FakeAPI, suffix: str) -> None:
    api.reply("GET", "/v1/stt/g", Reply(200, {"id": "g", "status": "queued"}))
    with STTClient(KEY, api.url + suffix) as c:
        assert c.get("g").status == "queued"


def test_a_poll_sends_what_a_create_sends_and_returns_cookies(
    api: FakeAPI, client: STTClient
) -> None:
    """Polls reuse one prepared GET (tasks/client.py ``_send``): the server sees the same
    headers as on a create, and a cookie it sets is sent back, as requests would."""
    api.reply("POST", "/v1/stt/create", Reply(201, {"generation_id": "g", "status": "queued"}))
    api.reply("GET", "/v1/stt/g", Reply(200, {"id": "g", "status": "queued"}))
    client.create(model="openai/gpt-4o-mini-transcribe", url="https://x/a.mp3")
    client.get("g")
    api.reply(
        "GET", "/v1/stt/g", Reply(200, {"id": "g", "status": "queued"}, {"Set-Cookie": "lb=7"})
    )
    client.get("g")
    client.get("g")
    create, *polls = api.seen
    ignore = {"Content-Type", "Content-Length"}
    for poll in polls:
        assert (poll.method, poll.path) == ("GET", "/v1/stt/g")
        assert {k: v for k, v in poll.headers.items() if k not in ignore | {"Cookie"}} == {
            k: v for k, v in create.headers.items() if k not in ignore
        }
    assert [p.headers.get("Cookie") for p in polls] == [None, None, "lb=7"]


def test_connections_are_pooled_and_reused(api: FakeAPI, client: STTClient) -> None:
    api.reply("GET", "/v1/stt/g", Reply(200, {"id": "g", "status": "queued"}))
    for _ in range(3):
        client.get("g")
    assert len({s.client_port for s in api.seen}) == 1


def test_429_with_retry_after(api: FakeAPI, client: STTClient) -> None:
    api.reply("GET", "/v1/stt/g", Reply(429, {"message": "Too many"}, {"Retry-After": "17"}))
    error = _raised(lambda: client.get("g"))
    assert isinstance(error, TransientError)
    assert (error.status_code, error.retry_after) == (429, 17.0)
    assert len(api.seen) == 1  # no hidden retry in urllib3


def test_503_html_is_transient_and_not_retried(api: FakeAPI, client: STTClient) -> None:
    api.reply(
        "GET",
        "/v1/stt/g",
        Reply(503, "<html>Service Unavailable</html>", {"Content-Type": "text/html"}),
    )
    error = _raised(lambda: client.get("g"))
    assert isinstance(error, TransientError)
    assert error.message == "server error: <html>Service Unavailable</html>"
    assert len(api.seen) == 1


def test_400_vendor_envelope(api: FakeAPI, client: STTClient) -> None:
    body = {
        "message": "Body validation error!",
        "path": "/v1/stt/create",
        "requestId": "req-42",
        "statusCode": 400,
        "timestamp": "2025-06-01T12:00:00Z",
    }
    api.reply("POST", "/v1/stt/create", Reply(400, body))
    error = _raised(lambda: client.create(model="m", url="not a url"))
    assert isinstance(error, PermanentError)
    assert str(error) == "rejected: Body validation error! | HTTP 400 | request id req-42"


def test_404_is_permanent(api: FakeAPI, client: STTClient) -> None:
    error = _raised(lambda: client.get("nope"))
    assert isinstance(error, PermanentError) and error.status_code == 404


def test_redirect_is_not_followed(api: FakeAPI, client: STTClient) -> None:
    api.reply("GET", "/v1/stt/g", Reply(302, b"", {"Location": "http://elsewhere.invalid/"}))
    error = _raised(lambda: client.get("g"))
    assert isinstance(error, PermanentError) and error.status_code == 302


def test_key_echoed_by_the_server_is_scrubbed(api: FakeAPI, client: STTClient) -> None:
    echo = {"message": f"bad key Bearer {KEY}", "requestId": KEY}
    api.reply("GET", "/v1/stt/g", Reply(401, echo, {"x-request-id": KEY}))
    error = _raised(lambda: client.get("g"))
    assert error.message == "unauthorized (check AIML_API_KEY): bad key Bearer ***"
    assert error.request_id == "***"


def test_key_never_in_debug_logs(
    api: FakeAPI, client: STTClient, caplog: pytest.LogCaptureFixture
) -> None:
    api.reply("GET", "/v1/stt/ok", Reply(200, {"id": "ok", "status": "queued"}))
    api.reply("GET", "/v1/stt/bad", Reply(500, {"message": KEY}))
    with caplog.at_level(logging.DEBUG):
        client.get("ok")
        _raised(lambda: client.get("bad"))
    assert "GET /v1/stt/ok -> 200" in caplog.text
    assert KEY not in caplog.text
    assert "Authorization" not in caplog.text
    assert KEY not in repr(client)


def test_2xx_with_non_json_body_is_permanent(api: FakeAPI, client: STTClient) -> None:
    api.reply("GET", "/v1/stt/g", Reply(200, "<html>gateway login</html>", {"x-request-id": "r-1"}))
    error = _raised(lambda: client.get("g"))
    assert isinstance(error, PermanentError)
    assert (
        error.message == "GET /v1/stt/g: malformed JSON in the answer: <html>gateway login</html>"
    )
    assert (error.status_code, error.request_id) == (200, "r-1")


def test_2xx_with_unknown_envelope_is_permanent(api: FakeAPI, client: STTClient) -> None:
    api.reply("GET", "/v1/stt/g", Reply(200, {"data": []}))
    error = _raised(lambda: client.get("g"))
    assert isinstance(error, PermanentError)
    assert "no generation id" in error.message


def test_huge_error_body_gives_a_short_message(api: FakeAPI, client: STTClient) -> None:
    api.reply("GET", "/v1/stt/g", Reply(500, b"E" * 5_000_000, {"Content-Type": "text/plain"}))
    error = _raised(lambda: client.get("g"))
    assert isinstance(error, TransientError)
    assert len(error.message) <= MAX_MESSAGE_CHARS


def test_read_timeout_is_transient(api: FakeAPI, client: STTClient) -> None:
    api.reply("GET", "/v1/stt/slow", Reply(200, {"id": "slow", "status": "queued"}, sleep=1.5))
    started = time.monotonic()
    error = _raised(lambda: client.get("slow"))
    assert time.monotonic() - started < 1.4
    assert isinstance(error, TransientError)
    assert error.message == "GET /v1/stt/slow: read timeout after 0.5 s"
    assert len(api.seen) == 1


def test_connection_closed_without_answer_is_transient(api: FakeAPI, client: STTClient) -> None:
    api.reply("GET", "/v1/stt/g", Reply(drop="before"))
    error = _raised(lambda: client.get("g"))
    assert isinstance(error, TransientError)
    assert error.message.startswith("GET /v1/stt/g: connection error:")
    assert len(api.seen) == 1


def test_connection_dropped_mid_body_is_transient(api: FakeAPI, client: STTClient) -> None:
    api.reply("GET", "/v1/stt/g", Reply(200, {"id": "g", "status": "completed"}, drop="midway"))
    error = _raised(lambda: client.get("g"))
    assert isinstance(error, TransientError)
    assert error.message == "GET /v1/stt/g: connection dropped mid-answer"


def test_connection_refused_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with STTClient(KEY, f"http://127.0.0.1:{port}", connect_timeout=1.0) as c:
        error = _raised(lambda: c.create(model="m", url="u"))
    assert isinstance(error, TransientError)
    assert error.message.startswith("POST /v1/stt/create: connection error:")


def test_from_settings(api: FakeAPI) -> None:
    api.reply("GET", "/v1/stt/g", Reply(200, {"id": "g", "status": "queued"}))
    with STTClient.from_settings(Settings(api_key=KEY, api_base=api.url + "/v1")) as c:
        assert c.get("g").status == "queued"
    with pytest.raises(ConfigurationError, match="AIML_API_KEY"):
        STTClient.from_settings(Settings(api_key=None))


def test_bad_base_url_and_empty_key_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="AIML_API_BASE"):
        STTClient(KEY, "api.aimlapi.com")
    with pytest.raises(ConfigurationError, match="AIML_API_KEY"):
        STTClient("", "https://api.aimlapi.com")


def test_a_callers_session_is_used_and_left_open(api: FakeAPI) -> None:
    class CountingSession(requests.Session):
        closed = 0

        def close(self) -> None:
            CountingSession.closed += 1
            super().close()

    api.reply("GET", "/v1/stt/g", Reply(200, {"id": "g", "status": "queued"}))
    session = CountingSession()
    with STTClient(KEY, api.url, session=session) as c:
        c.get("g")
    assert CountingSession.closed == 0
    assert "Authorization" not in session.headers  # the key went per request
    session.close()


@pytest.mark.parametrize("bad_key", ["sk-broken\nkey-0123", "sk-in ner-0123", "sk-ümlaut-0123"])
def test_unsendable_key_is_refused_up_front_without_quoting_it(bad_key: str) -> None:
    with pytest.raises(ConfigurationError, match="AIML_API_KEY") as info:
        STTClient(bad_key, "https://api.aimlapi.com")
    assert "sk-" not in str(info.value)


def test_surrounding_whitespace_of_the_key_is_dropped(api: FakeAPI) -> None:
    api.reply("GET", "/v1/stt/g", Reply(200, {"id": "g", "status": "queued"}))
    with STTClient(f"  {KEY}\r\n", api.url) as c:
        c.get("g")
    assert api.seen[0].headers["Authorization"] == f"Bearer {KEY}"


def test_request_exceptions_are_scrubbed_even_when_escaped(api: FakeAPI) -> None:
    # requests quotes header values with repr() in its errors; both forms are scrubbed.
    class Exploding(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> Any:
            header = kwargs["headers"]["Authorization"]
            raise requests.exceptions.InvalidHeader(f"bad header value: {header!r}")

    with STTClient(KEY + "\\x", api.url, session=Exploding()) as c:
        error = _raised(lambda: c.get("g"))
    assert isinstance(error, PermanentError)
    assert error.message == "GET /v1/stt/g: InvalidHeader: bad header value: 'Bearer ***'"
    assert error.__suppress_context__
