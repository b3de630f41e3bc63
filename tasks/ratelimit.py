"""A requests-per-second limit shared by every worker process: GCRA in one Redis script.

Why not Celery's ``rate_limit``: it is enforced per worker process (four workers at
``10/s`` send 40/s) and it makes the worker hold the task until its turn. Here every process
asks one Redis key before each HTTP request, and a refused caller is told how long to wait,
so its task re-schedules itself (``RateLimited``) instead of sleeping in a worker slot.

Why GCRA with no burst: the promise is "never more than N requests in any second". A
classic token bucket of capacity C lets C + N through in one second; GCRA (the generic cell
rate algorithm) with zero burst tolerance hands out *slots* at least one interval apart and
keeps one number per limit, the *theoretical arrival time* (TAT) of the next free slot.

Why the slots may be claimed a little late: a refused task comes back on a Celery countdown,
which fires some milliseconds after the slot it was told. Plain GCRA would start the next
slot from the late grant, so the next caller, on time, would find it taken and go to the
back of the queue: measured, 40 % of the slots went unused. Here a grant up to ``LATE`` s
after its slot still claims that slot. To keep the promise the interval is widened to
``(1 + LATE) / N``: slots at least that far apart, each grant within ``LATE`` after its
slot, so any one-second window holds at most ``ceil(N)`` grants, for ~5 % of throughput.

Why a wait queue: if every refused caller were told "come back when the next slot frees",
all of them would come back at once and all but one would be refused again (n² retries for
n callers). The script also keeps the tail of a virtual queue and hands each refused
caller the next free slot after it, so their retries arrive one slot apart. The queue is
only advice: a returning caller still has to win a real grant, which keeps the limit
strict even when Celery runs a countdown late.

The clock is the Redis server's (``TIME``), so workers on hosts with skewed clocks agree;
tests may inject their own. Times are integer microseconds: exact in Lua's doubles.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tasks import metrics
from tasks.errors import RateLimited

__all__ = [
    "DEFAULT_KEY",
    "MAX_WAIT",
    "RateLimiter",
    "limiter_redis",
    "now_arg",
    "warn_fail_open",
]

log = logging.getLogger(__name__)

DEFAULT_KEY = "stt:ratelimit:api"
# The longest countdown handed out. Well below the broker's visibility timeout (900 s,
# tasks.celeryconfig); a caller queued further back simply asks again after this.
MAX_WAIT = 60.0
# How late a grant may be and still claim its slot (see above; Celery countdowns fire a few
# ms late, more on a busy host). It widens the interval by the same share.
LATE = 0.05
# A limiter must not stall a task when its Redis hangs or is down: fail fast, then open.
REDIS_TIMEOUT = 2.0
# A limiter whose Redis is down lets requests through (see ``warn_fail_open``), and says
# so at most this often per process.
WARN_EVERY = 30.0

_GCRA = """
local interval = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local tat = tonumber(redis.call('GET', KEYS[1])) or 0
if tat <= now then
  local slot = math.max(tat, now - tonumber(ARGV[4]))
  redis.call('SET', KEYS[1], string.format('%d', slot + interval),
             'PX', math.ceil(interval / 1000) + 1000)
  return 0
end
local tail = tonumber(redis.call('GET', KEYS[2])) or 0
local at = math.min(math.max(tat, tail + interval), now + tonumber(ARGV[3]))
redis.call('SET', KEYS[2], string.format('%d', at), 'PX', math.ceil((at - now) / 1000) + 1000)
return at - now
"""

_last_warning = 0.0


def limiter_redis(url: str) -> redis.Redis:
    """A Redis client for the limits: short timeouts, one immediate retry (a pooled
    connection gone stale after a Redis restart), not redis-py's default backoff of
    seconds, which would hold every task that much longer while Redis is down."""
    return redis.Redis.from_url(
        url,
        socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT,
        retry=Retry(NoBackoff(), 1),
    )


def warn_fail_open(what: str, exc: Exception) -> None:
    """Log that a limit is not enforced because its Redis failed (at most every 30 s)."""
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= WARN_EVERY:
        _last_warning = now
        log.warning("%s not enforced, Redis unreachable: %s", what, exc)


def now_arg(clock: Callable[[], float] | None) -> str:
    """ARGV for "now": the injected clock in microseconds, or "" for Redis ``TIME``."""
    return "" if clock is None else str(round(clock() * 1_000_000))


class RateLimiter:
    """At most ``rate`` grants per second across every process sharing ``client``.

    ``try_acquire`` answers 0 (granted: send now) or the seconds to wait; ``acquire``
    raises ``RateLimited`` instead, and lets the request through if Redis is unreachable.
    """

    def __init__(
        self,
        client: redis.Redis,
        rate: float,
        *,
        key: str = DEFAULT_KEY,
        clock: Callable[[], float] | None = None,
        max_wait: float = MAX_WAIT,
        late: float = LATE,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        # Rounded up, so no one-second window can hold more than ceil(rate) grants.
        self._interval = math.ceil((1 + late) * 1_000_000 / rate)
        self._late = round(late * 1_000_000)
        self._keys = [key, f"{key}:queue"]
        self._clock = clock
        self._max_wait = round(max_wait * 1_000_000)
        self._script = client.register_script(_GCRA)

    def try_acquire(self) -> float:
        """Take a grant (0.0) or learn how many seconds until this caller's turn."""
        wait = self._script(
            keys=self._keys,
            args=[self._interval, now_arg(self._clock), self._max_wait, self._late],
        )
        return int(wait) / 1_000_000

    @property
    def interval(self) -> float:
        """Seconds between two slots."""
        return self._interval / 1_000_000

    def acquire(self) -> None:
        """Return when a request may be sent now; ``RateLimited`` if it may not yet.

        Fails open: if Redis cannot be reached the request goes ahead (with a warning).
        The limiter's Redis is normally the broker, whose loss stops new work anyway, and
        the API's own 429 + Retry-After remains the backstop (``TransientError``).
        """
        try:
            wait = self.try_acquire()
        except redis.RedisError as exc:
            warn_fail_open("the API rate limit", exc)
            return
        if wait > 0:
            metrics.limit_wait("rate", wait)
            raise RateLimited(
                f"API rate limit of {self.rate:g}/s reached; next slot in {wait:.2f} s",
                retry_after=wait,
            )

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate:g}/s, key={self._keys[0]!r})"
