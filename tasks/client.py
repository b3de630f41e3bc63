"""The HTTP client for the AI/ML API's asynchronous speech-to-text endpoints.

Two verbs, as in the vendor's own examples: ``create`` (``POST /v1/stt/create``) starts a
server-side job and answers its ``generation_id``; ``get`` (``GET /v1/stt/{id}``) asks how
it stands. Waiting is not this module's business: the tasks decide when to ask again.

Every failure leaves here as one of the two errors of ``tasks.errors``, so a task only has
to tell "try again later" (``TransientError``) from "give up" (``PermanentError``).
urllib3's own retries are switched off because retrying is the tasks' job: a hidden retry
here would double the API calls and hide the ``Retry-After`` the server asked for.

Each request has a *total* deadline (``STT_REQUEST_TIMEOUT``, by default connect + read
timeout), enforced by ``tasks.deadline`` however slowly the server sends: past it the
connection is cut and the call raises ``RequestTimeout``, a transient error.

The API key goes into one header and nowhere else: not into messages, logs or ``repr``.
A server that echoes it back (raw, or JSON-escaped as ``sk-live\\/AbC``) has it scrubbed
from the bytes and again from the decoded answer, so it reaches no row, error or callback.
"""

from __future__ import annotations

import logging
import os
import time
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import quote

import requests
from urllib3.exceptions import ReadTimeoutError

from tasks import metrics
from tasks.answers import AnswerTooComplex, decode_answer
from tasks.deadline import DeadlineAdapter, Scope, deadline, mount
from tasks.envelopes import (
    MAX_ERROR_BODY_BYTES,
    SNIPPET_CHARS,
    error_from_response,
    header,
    parse_generation,
    truncate,
)
from tasks.errors import (
    ConfigurationError,
    PermanentError,
    RequestTimeout,
    STTError,
    TransientError,
)
from tasks.models import Generation
from tasks.redact import scrub_json, scrub_secret
from tasks.settings import Settings

__all__ = ["MAX_ANSWER_BYTES", "STTClient", "Throttle"]

log = logging.getLogger(__name__)

# One pooled connection per concurrent caller; a threaded or gevent worker needs more than
# the prefork default of one. Connections beyond this are opened and dropped, not awaited.
DEFAULT_POOL_SIZE = 16
# A success body larger than this is refused, not parsed: an hour of audio with word
# timings is a few MB, so 16 MiB is a broken or hostile server, and reading it whole would
# let one answer take a worker's memory (and the database row) with it.
MAX_ANSWER_BYTES = 16 * 1024 * 1024


def _settle_environment(session: requests.Session, root: str) -> None:
    """Read the proxy and CA-bundle variables once, then stop requests re-reading them.

    With ``trust_env`` on, requests scans the whole environment for proxies and looks for
    a ``.netrc`` on *every* request: ~1 ms of CPU per call in a worker's environment, the
    largest single cost of a poll after the HTTP round trip (profile in docs/benchmarks.md).
    Every request goes to ``root``, so resolving them for it once is exact. (Not reading
    ``.netrc`` is also right: its credentials would replace our Bearer header.)
    """
    session.proxies.update(requests.utils.get_environ_proxies(root))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False


class Throttle(Protocol):
    """Asked before every request: returns to go ahead, raises ``RateLimited`` to wait."""

    def acquire(self) -> None: ...


def _api_root(base_url: str) -> str:
    """``https://host``, ``https://host/`` and ``https://host/v1/`` all name one API."""
    if not base_url.startswith(("http://", "https://")):
        raise ConfigurationError("AIML_API_BASE", f"must be an http(s) URL, got {base_url!r}")
    root = base_url.rstrip("/")
    return root.removesuffix("/v1")


class STTClient:
    """Pooled, typed access to ``/v1/stt/create`` and ``/v1/stt/{generation_id}``.

    One instance per process (see ``tasks.runtime``): it holds a connection pool. Use it as
    a context manager, or call ``close()``; a session passed in stays the caller's to close.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        total_timeout: float | None = None,
        session: requests.Session | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        throttle: Throttle | None = None,
    ) -> None:
        api_key = api_key.strip()  # a trailing newline or \r from an env file is common
        if not api_key:
            raise ConfigurationError("AIML_API_KEY", "is empty; the client cannot authenticate")
        if not (api_key.isascii() and api_key.isprintable()) or " " in api_key:
            # It would fail in the header anyway, deep in a task, with the key in the error.
            raise ConfigurationError("AIML_API_KEY", "has spaces or non-ASCII characters")
        self._key = api_key
        self._root = _api_root(base_url)
        # The whole request's budget; no single wait may exceed it either.
        self._deadline = total_timeout or connect_timeout + read_timeout
        self._timeout = (min(connect_timeout, self._deadline), min(read_timeout, self._deadline))
        self._owns_session = session is None
        # Every request passes _call, so a shared rate limit here covers creates and polls.
        self._throttle = throttle
        if session is None:
            session = requests.Session()
            # No connect/read/status retries inside urllib3 (see module docstring); every
            # connection obeys the request's total deadline.
            mount(session, DeadlineAdapter(pool_size=pool_size))
            _settle_environment(session, self._root)
        self._session = session
        # Per request, not on the session: a caller's session is not changed.
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": "aiml-stt-workers/0.1",
        }
        # A poll's GET, prepared once with all our own session adds (see _send), and the
        # root as requests normalises it (host case, IDNA) to put its paths after.
        self._get_template: requests.PreparedRequest | None = None
        self._root_url = self._root
        if self._owns_session:
            template = session.prepare_request(
                requests.Request("GET", self._root + "/", headers=self._headers)
            )
            self._get_template = template
            self._root_url = str(template.url).removesuffix("/")

    @classmethod
    def from_settings(cls, settings: Settings, *, throttle: Throttle | None = None) -> STTClient:
        """A client configured from ``settings``; ``ConfigurationError`` without a key."""
        return cls(
            settings.require_api_key(),
            settings.api_base,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            total_timeout=settings.api_deadline,
            throttle=throttle,
        )

    def create(
        self,
        *,
        model: str,
        url: str,
        language: str | None = None,
        prompt: str | None = None,
        temperature: float | None = None,
    ) -> Generation:
        """Start a transcription; the answer carries the ``generation_id`` to poll."""
        payload: dict[str, Any] = {"model": model, "url": url}
        optional = {"language": language, "prompt": prompt, "temperature": temperature}
        payload.update({k: v for k, v in optional.items() if v is not None})
        data, request_id = self._call("POST", "/v1/stt/create", payload)
        return parse_generation(data, request_id=request_id, default_status="queued")

    def get(self, generation_id: str) -> Generation:
        """How the job stands now: status, and the result once it is completed."""
        path = "/v1/stt/" + quote(generation_id, safe="")
        data, request_id = self._call("GET", path, None)
        return parse_generation(data, request_id=request_id)

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> STTClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"STTClient(base_url={self._root!r})"

    def _scrub(self, text: str) -> str:
        # Every echoed form: raw, JSON-escaped, and repr() (requests quotes bad headers).
        return scrub_secret(text, self._key)

    def _scrub_error(self, error: STTError) -> STTError:
        """The error with the key out of its message and request id (both from the body)."""
        error.message = self._scrub(error.message)
        error.args = (error.message,)
        if error.request_id:
            error.request_id = self._scrub(error.request_id)
        return error

    def _timed_out(self, what: str) -> RequestTimeout:
        return RequestTimeout(
            f"{what}: no complete answer within the {self._deadline:g} s total deadline "
            "(STT_REQUEST_TIMEOUT)",
            seconds=self._deadline,
        )

    @metrics.count_unanswered
    def _call(
        self, method: str, path: str, payload: dict[str, Any] | None
    ) -> tuple[Any, str | None]:
        """One request; the decoded JSON and the request id, or an ``STTError``."""
        what = f"{method} {path}"
        if self._throttle is not None:
            self._throttle.acquire()  # RateLimited: nothing was sent
        started = time.monotonic()
        with deadline(self._deadline) as scope:
            try:
                with self._send(method, path, payload) as response:
                    status = response.status_code
                    ok = 200 <= status <= 299
                    limit = MAX_ANSWER_BYTES + 1 if ok else MAX_ERROR_BODY_BYTES
                    body = _read_capped(response, limit, scope)
                    headers = {k: self._scrub(v) for k, v in response.headers.items()}
            except requests.RequestException as exc:
                if scope.expired:  # the watchdog cut the connection: say why
                    raise self._timed_out(what) from None
                raise self._request_error(what, exc) from None
        if scope.expired:  # cut between two chunks: what was read is not the answer
            raise self._timed_out(what)
        log.debug("%s -> %d in %.3f s", what, status, time.monotonic() - started)
        metrics.api_answered(path, status, time.monotonic() - started)
        request_id = header(headers, "x-request-id") or header(headers, "request-id")
        body = body.replace(self._key.encode(), b"***")
        if not ok:
            raise self._scrub_error(error_from_response(status, headers, body))
        if len(body) > MAX_ANSWER_BYTES:
            raise PermanentError(
                f"{what}: answer larger than {MAX_ANSWER_BYTES // (1024 * 1024)} MiB, not read",
                status_code=status,
                request_id=request_id,
            )
        try:
            data = decode_answer(body)
        except AnswerTooComplex as exc:
            raise PermanentError(
                f"{what}: {exc}", status_code=status, request_id=request_id
            ) from None
        except ValueError:
            snippet = truncate(self._scrub(body[:SNIPPET_CHARS].decode("utf-8", "replace")))
            raise PermanentError(
                f"{what}: malformed JSON in the answer: {snippet or 'empty body'}",
                status_code=status,
                request_id=request_id,
            ) from None
        if b"\\" in body:  # JSON escapes can spell the key so the byte scrub misses it
            data = scrub_json(data, self._key)
        return data, request_id

    def _send(self, method: str, path: str, payload: dict[str, Any] | None) -> requests.Response:
        """Send one request, streamed (an error body is read only as far as we need it).

        A GET on our own session copies a request prepared once: ``Session.request``
        prepares every request anew (merges headers, auth and hooks, parses and re-quotes
        the URL), and that was a quarter of a poll's GET: ``get()`` 0.51 -> 0.38 ms of CPU
        against the emulator (docs/benchmarks.md, poll cost). Only the path differs
        between polls, and it is already quoted. Once the server has set a cookie,
        requests' own way sends it back.
        """
        template = self._get_template
        options: dict[str, Any] = {
            "timeout": self._timeout,
            "stream": True,
            "allow_redirects": False,
        }
        if method == "GET" and template is not None and not self._session.cookies:
            request = template.copy()
            request.url = self._root_url + path
            return self._session.send(request, **options)
        return self._session.request(
            method, self._root + path, json=payload, headers=self._headers, **options
        )

    def _request_error(self, what: str, exc: requests.RequestException) -> STTError:
        """The taxonomy's error for a request that failed before a whole answer arrived."""
        if isinstance(exc, requests.ConnectTimeout):
            return RequestTimeout(
                f"{what}: connect timeout after {self._timeout[0]:g} s", seconds=self._timeout[0]
            )
        # requests reports a read timeout while streaming the body as a ConnectionError.
        if isinstance(exc, requests.Timeout) or any(
            isinstance(arg, ReadTimeoutError) for arg in exc.args
        ):
            return RequestTimeout(
                f"{what}: read timeout after {self._timeout[1]:g} s", seconds=self._timeout[1]
            )
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            return TransientError(f"{what}: connection dropped mid-answer")
        detail = truncate(self._scrub(str(exc)), SNIPPET_CHARS)
        if isinstance(exc, requests.ConnectionError):
            return TransientError(f"{what}: connection error: {detail}")
        return PermanentError(f"{what}: {type(exc).__name__}: {detail}")


def _read_capped(response: requests.Response, limit: int, scope: Scope) -> bytes:
    """At most ``limit`` bytes of a streamed body; the rest is never read. Stops at the
    deadline (the watchdog also cuts a read that is blocked when it passes)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=65536):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
        if scope.remaining() <= 0:
            scope.expired = True
            break
    return b"".join(chunks)[:limit]
