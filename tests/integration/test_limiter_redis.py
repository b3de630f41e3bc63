"""The shared limits' arithmetic, run by a real redis-server with an injected clock."""

from __future__ import annotations

import heapq
import math
import time
import uuid
from collections import deque

import pytest
import redis

from tasks.errors import RateLimited
from tasks.inflight import DEFER_MAX, InFlightLimiter, deferral_delay
from tasks.ratelimit import RateLimiter, limiter_redis
from tests.fixtures.services import RedisServer, free_port


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def key() -> str:
    return f"test:{uuid.uuid4().hex}"


def max_in_window(times: list[float]) -> int:
    """The most grants in any half-open second [t, t + 1): sliding, not calendar.

    In whole microseconds, the limiter's own unit, so float noise cannot add a grant.
    """
    best, recent = 0, deque[int]()
    for t in sorted(round(t * 1_000_000) for t in times):
        recent.append(t)
        while recent[0] <= t - 1_000_000:
            recent.popleft()
        best = max(best, len(recent))
    return best


def test_grants_are_spaced_and_refused_callers_are_queued_one_slot_apart(
    redis_server: RedisServer,
) -> None:
    clock = Clock()
    limiter = RateLimiter(redis_server.client(), 10, key=key(), clock=clock, late=0.05)
    step = limiter.interval
    assert step == pytest.approx(0.105)  # (1 + late) / rate
    assert limiter.try_acquire() == 0  # claims the slot at now - late: the first is free
    # Five callers at the same instant: each is handed the next free slot, not the same one.
    waits = [limiter.try_acquire() for _ in range(5)]
    assert waits == pytest.approx([step * k - 0.05 for k in range(1, 6)])
    clock.now += step - 0.05 + 0.03  # the first of them, back a little late: still its slot
    assert limiter.try_acquire() == 0
    clock.now += step - 0.03  # so the second, on time, is not turned away
    assert limiter.try_acquire() == 0
    clock.now += 0.01  # a newcomer queues behind the three still waiting
    assert limiter.try_acquire() == pytest.approx(4 * step - 0.01)
    with pytest.raises(RateLimited) as caught:
        limiter.acquire()
    assert caught.value.retry_after == pytest.approx(5 * step - 0.01)
    clock.now += 3600  # everything stale: one grant, never a burst of saved-up tokens
    assert limiter.try_acquire() == 0
    assert limiter.try_acquire() == pytest.approx(step - 0.05)


@pytest.mark.parametrize("rate", [10.0, 7.5, 3.0])
def test_callers_obeying_the_waits_never_exceed_the_rate_and_keep_it_busy(
    redis_server: RedisServer, rate: float
) -> None:
    """60 callers, each wanting 3 requests, coming back when told (some of them late)."""
    clock = Clock()
    limiter = RateLimiter(redis_server.client(), rate, key=key(), clock=clock)
    start = clock.now
    due = [(start + i * 0.001, i) for i in range(60)]
    left = dict.fromkeys(range(60), 3)
    grants: list[float] = []
    refusals = 0
    while due:
        clock.now, caller = heapq.heappop(due)
        wait = limiter.try_acquire()
        if wait == 0:
            grants.append(clock.now)
            left[caller] -= 1
            if left[caller]:
                heapq.heappush(due, (clock.now + 0.2, caller))
        else:
            refusals += 1
            late = (caller % 7) * 0.01  # countdowns fire 0 to 60 ms late
            heapq.heappush(due, (clock.now + wait + late, caller))
    assert len(grants) == 180
    assert max_in_window(grants) <= math.ceil(rate)
    busy = grants[-1] - grants[0]
    assert busy <= 1.2 * 179 / rate  # slots lost to late callers stay few
    assert refusals <= 4 * len(grants)  # queued, not a thundering herd (n^2 = 3600)


def test_the_server_clock_is_used_when_none_is_injected(redis_server: RedisServer) -> None:
    limiter = RateLimiter(redis_server.client(), 20, key=key())
    started, grants = time.monotonic(), 0
    while time.monotonic() - started < 0.5:
        grants += limiter.try_acquire() == 0
    assert 1 <= grants <= 11  # 20/s for half a second, one slot of slack


def test_limits_fail_open_when_redis_is_unreachable() -> None:
    dead = limiter_redis(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    limiter = RateLimiter(dead, 1)
    with pytest.raises(redis.ConnectionError):
        limiter.try_acquire()
    limiter.acquire()  # no exception: the request goes ahead
    cap = InFlightLimiter(dead, 1, seed=list)
    cap.acquire("a")
    cap.acquire("b")
    cap.refresh("a")
    cap.release("a")
    assert time.monotonic() - started < 5  # no retry backoff holding the task


def test_in_flight_cap_holds_renews_expires_and_frees(redis_server: RedisServer) -> None:
    clock = Clock()
    cap = InFlightLimiter(redis_server.client(), 2, seed=list, key=key(), clock=clock, lease=60)
    cap.acquire("a")
    cap.acquire("b")
    with pytest.raises(RateLimited) as caught:
        cap.acquire("c", deferrals=3)
    assert 0.5 * 1.5**3 <= caught.value.retry_after <= 1.5**3
    cap.acquire("a")  # a retried submit keeps the slot it holds
    cap.release("a")
    cap.acquire("c")
    cap.refresh("d")  # polled, so at the API: counted even over the cap
    assert sorted(cap.holders()) == ["b", "c", "d"]
    assert not cap.try_acquire("e")
    clock.now += 30
    cap.refresh("b")
    clock.now += 31  # c's and d's leases ran out (no poll renewed them), b's did not
    assert cap.try_acquire("e")
    assert sorted(cap.holders()) == ["b", "e"]


def test_in_flight_set_is_rebuilt_from_the_database_after_a_flush(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    calls: list[int] = []

    def seed() -> list[str]:
        calls.append(1)
        return ["x", "y"]  # what the rows say is at the API

    cap = InFlightLimiter(client, 2, seed=seed, key=key())
    with pytest.raises(RateLimited):
        cap.acquire("z")  # rebuilt first, then full
    assert sorted(cap.holders()) == ["x", "y"] and len(calls) == 1
    cap.release("x")
    cap.acquire("z")
    assert len(calls) == 1  # rebuilt once, not on every call
    client.flushall()
    assert not cap.try_acquire("w")
    assert len(calls) == 2


def test_deferral_delay_grows_to_a_cap_and_is_jittered_down_only() -> None:
    assert deferral_delay(0, rand=lambda: 1.0) == 1.0
    assert deferral_delay(0, rand=lambda: 0.0) == 0.5
    assert deferral_delay(2, rand=lambda: 1.0) == pytest.approx(2.25)
    assert deferral_delay(10_000, rand=lambda: 1.0) == DEFER_MAX
    assert deferral_delay(-1, rand=lambda: 1.0) == 1.0
