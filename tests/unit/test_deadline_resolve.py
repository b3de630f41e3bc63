"""Name resolution under a request's deadline (tasks.deadline.resolve).

The resolver is a parameter so that a stalling one can be played without a DNS server:
it blocks until the test lets it go.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

from tasks.deadline import deadline, resolve

ANSWER = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.7", 80))]


def test_a_stalling_resolver_is_given_up_on_at_the_deadline() -> None:
    release = threading.Event()
    calls: list[tuple[Any, ...]] = []

    def stalling(*args: Any) -> list[tuple[Any, ...]]:
        calls.append(args)
        release.wait(60)
        return ANSWER

    try:
        with (
            deadline(0.2) as scope,
            pytest.raises(TimeoutError, match=r"resolving audio\.example took longer"),
        ):
            resolve("audio.example", 80, 0, socket.SOCK_STREAM, resolver=stalling)
        assert scope.expired  # the caller reports a timeout, as for a slow server
        assert calls == [("audio.example", 80, 0, socket.SOCK_STREAM)]
    finally:
        release.set()


def test_an_answer_or_a_resolver_error_comes_back_as_is() -> None:
    with deadline(30) as scope:
        assert resolve("audio.example", 80, resolver=lambda *a: ANSWER) == ANSWER

        def failing(*_: Any) -> list[tuple[Any, ...]]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

        with pytest.raises(socket.gaierror, match="not known"):
            resolve("nowhere.invalid", 80, resolver=failing)
    assert not scope.expired


def test_without_a_deadline_the_resolver_runs_in_the_callers_thread() -> None:
    threads: list[str] = []

    def recording(*_: Any) -> list[tuple[Any, ...]]:
        threads.append(threading.current_thread().name)
        return ANSWER

    assert resolve("audio.example", 80, resolver=recording) == ANSWER
    assert threads == [threading.current_thread().name]
