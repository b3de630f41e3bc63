"""A cap on jobs in flight at the API, shared by every worker process.

"In flight" means created at the API and not yet seen finished: rows in status
``submitted`` whose ``finished_at`` is empty. The database is the source of truth, but
counting rows cannot be made atomic with the create call across processes without holding
a lock over an HTTP request. So the cap lives in Redis as a semaphore of *leases*: a sorted
set of job ids scored by when their lease runs out, changed only by one Lua script, so four
processes cannot all take the last slot.

- ``acquire`` (before the create) takes a slot, or raises ``RateLimited``: the submit
  re-schedules itself without counting an attempt. A job that already holds a slot (a
  retried submit) keeps it.
- ``refresh`` (before each poll) renews the lease, taking the slot even over the cap: the
  job *is* at the API, and the count must say so.
- ``release`` (when the job ended) frees it.

Self-healing: a lease not renewed for ``LEASE_SECONDS`` (its worker died, its message was
lost) runs out and frees the slot. After a Redis ``FLUSHALL`` the set is rebuilt from the
database before the next slot is handed out (a marker key says whether it was), and every
live job re-registers on its next poll.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable

import redis
from sqlalchemy import select

from tasks import metrics
from tasks.errors import RateLimited
from tasks.models import JobStatus
from tasks.ratelimit import now_arg, warn_fail_open
from tasks.schema import JobRow
from tasks.store import Store

__all__ = [
    "DEFAULT_KEY",
    "LEASE_SECONDS",
    "InFlightLimiter",
    "deferral_delay",
    "in_flight_job_ids",
]

log = logging.getLogger(__name__)

DEFAULT_KEY = "stt:inflight"
# Longer than any gap between two polls of a live job (15 s schedule cap, 300 s
# Retry-After cap, 60 s rate-limit wait) plus the sweeper's 360 s grace to re-drive a lost
# poll, so a healthy job never loses its slot; short enough that a vanished one frees it.
LEASE_SECONDS = 900.0
# A submit refused by the cap asks again after 1, 1.5, 2.25 ... up to 15 s (jittered):
# jobs are seen finished on the poll schedule (at most 15 s apart), so asking for a slot
# more often buys little, and a long queue of waiting submits does not churn the broker.
DEFER_FIRST = 1.0
DEFER_FACTOR = 1.5
DEFER_MAX = 15.0

_ACQUIRE = """
local now = tonumber(ARGV[4])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
if ARGV[5] == '1' or redis.call('ZSCORE', KEYS[1], ARGV[1])
   or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[3])), ARGV[1])
  return 1
end
return 0
"""

_SEED = """
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local until_ = string.format('%d', now + tonumber(ARGV[1]))
for i = 3, #ARGV do redis.call('ZADD', KEYS[1], until_, ARGV[i]) end
redis.call('SET', KEYS[2], '1')
return #ARGV - 2
"""


def deferral_delay(deferrals: int, *, rand: Callable[[], float] = random.random) -> float:
    """Seconds before a submit refused ``deferrals`` times already asks again.

    Jittered down to half so the waiting submits spread out instead of asking together.
    """
    try:
        ceiling = min(DEFER_MAX, DEFER_FIRST * DEFER_FACTOR ** max(deferrals, 0))
    except OverflowError:
        ceiling = DEFER_MAX
    return ceiling * (0.5 + rand() / 2)


def in_flight_job_ids(store: Store) -> list[str]:
    """The jobs the database says are at the API now: what the Redis set is rebuilt from."""
    with store.session() as session:
        return list(
            session.scalars(
                select(JobRow.id).where(
                    JobRow.status == JobStatus.SUBMITTED.value, JobRow.finished_at.is_(None)
                )
            )
        )


class InFlightLimiter:
    """At most ``cap`` jobs holding a lease at once, across every process sharing ``client``.

    ``seed`` lists the jobs in flight according to the database; it is called only when the
    Redis set has to be rebuilt. Like the rate limiter it fails open if Redis is down.
    """

    def __init__(
        self,
        client: redis.Redis,
        cap: int,
        *,
        seed: Callable[[], Iterable[str]],
        key: str = DEFAULT_KEY,
        clock: Callable[[], float] | None = None,
        lease: float = LEASE_SECONDS,
    ) -> None:
        if cap < 1:
            raise ValueError(f"cap must be at least 1, got {cap}")
        self.cap = cap
        self._client = client
        self._seed = seed
        self._keys = [key, f"{key}:seeded"]
        self._clock = clock
        self._lease = round(lease * 1_000_000)
        self._acquire = client.register_script(_ACQUIRE)
        self._seed_script = client.register_script(_SEED)

    def try_acquire(self, job_id: str, *, force: bool = False) -> bool:
        """Take (or keep) a slot for ``job_id``; ``force`` takes it even over the cap."""
        for _ in range(3):
            got = int(
                self._acquire(
                    keys=self._keys,
                    args=[job_id, self.cap, self._lease, now_arg(self._clock), int(force)],
                )
            )
            if got >= 0:
                return got == 1
            self.rebuild()
        raise redis.RedisError("the in-flight set vanished three times while rebuilding it")

    def rebuild(self) -> int:
        """Seed the set from the database if it is missing; the number of jobs added."""
        ids = list(self._seed())
        added = int(
            self._seed_script(keys=self._keys, args=[self._lease, now_arg(self._clock), *ids])
        )
        if added:
            log.warning("in-flight set rebuilt from the database: %d jobs", added)
        return added

    def acquire(self, job_id: str, *, deferrals: int = 0) -> None:
        """Return if ``job_id`` may be created now; ``RateLimited`` if the cap is reached."""
        try:
            granted = self.try_acquire(job_id)
        except redis.RedisError as exc:
            warn_fail_open("the in-flight cap", exc)
            return
        if not granted:
            wait = deferral_delay(deferrals)
            metrics.limit_wait("in_flight", wait)
            raise RateLimited(
                f"{self.cap} jobs in flight at the API; asking again in {wait:.1f} s",
                retry_after=wait,
            )

    def refresh(self, job_id: str) -> None:
        """Renew the lease of a job that is at the API (it counts even over the cap)."""
        try:
            self.try_acquire(job_id, force=True)
        except redis.RedisError as exc:
            warn_fail_open("the in-flight cap", exc)

    def release(self, job_id: str) -> None:
        """Free the job's slot (idempotent)."""
        try:
            self._client.zrem(self._keys[0], job_id)
        except redis.RedisError as exc:
            warn_fail_open("the in-flight cap", exc)

    def holders(self) -> list[str]:
        """The job ids holding a slot (for tests and operators; may include stale leases)."""
        members = self._client.zrange(self._keys[0], 0, -1)
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]

    def __repr__(self) -> str:
        return f"InFlightLimiter(cap={self.cap}, key={self._keys[0]!r})"
