"""Leases and the fence: when a job's step is due, and which step chain owns the job.

Every job row carries ``due_at`` (when its current step is next due) and ``chain`` (the
number of the step chain that owns it). Each step that re-schedules itself writes its due
time; the sweeper re-drives only a job whose due time passed more than the grace ago, and
does so by a compare-and-set on ``chain``, so the chain it replaced, should it only have
been late, finds itself stale on its next write and stops. Every number of that scheme is
here, as pure functions, so the steps and the sweeper agree on it.

- A submit *claims* the job before ``POST /create``: ``chain -> chain + 1`` and a lease
  covering the whole request (``claim_lease``). A second submit for the same job (a
  redelivery, a sweep) fails the claim and never creates again.
- A poll holds a lease a little longer than its next countdown (``poll_lease``) and
  writes the row only when that lease is about to run out (``needs_renewal``) or the
  server's status word changed: most polls write nothing.
- The sweeper backs off a job it has re-driven before (``redrive_after``), so a job that
  keeps getting lost (a poison message, a broker that keeps dropping it) costs a re-drive
  every few minutes at most, not every sweep.
"""

from __future__ import annotations

from datetime import datetime, timedelta

__all__ = [
    "CLAIM_EXTRA",
    "LEASE_EXTRA",
    "LEASE_MARGIN",
    "MAX_BACKOFF_DOUBLINGS",
    "claim_lease",
    "needs_renewal",
    "poll_lease",
    "redrive_after",
]

# A submit's claim outlives its request (connect + read timeout) by this much: the answer
# is recorded milliseconds after it arrives, the rest is slack for a busy worker (the
# sweeper's grace comes on top). Kept short: a submit lost mid-create (kill -9, FLUSHALL)
# is re-driven only once this lease and the grace have run out.
CLAIM_EXTRA = 10.0
# A poll's lease runs this long past its next countdown, so that a poll need not write
# the row every time; it also absorbs a little queueing before the sweeper's grace starts.
LEASE_EXTRA = 20.0
# Renew when fewer than this many seconds of lease would be left at the next poll.
LEASE_MARGIN = 2.0
# The sweeper's backoff doubles at most this many times: grace x 16 (8 min at 30 s).
MAX_BACKOFF_DOUBLINGS = 4


def claim_lease(now: datetime, request_timeout: float) -> datetime:
    """How long a submit owns the job while it calls ``POST /create``."""
    return now + timedelta(seconds=request_timeout + CLAIM_EXTRA)


def poll_lease(next_at: datetime) -> datetime:
    """The lease a poll writes when it renews: past its next run by ``LEASE_EXTRA``."""
    return next_at + timedelta(seconds=LEASE_EXTRA)


def needs_renewal(lease: float | None, next_at: datetime) -> bool:
    """Whether the lease (epoch seconds; None: unknown) would run short at ``next_at``."""
    return lease is None or next_at.timestamp() + LEASE_MARGIN > lease


def redrive_after(grace: float, redrives: int) -> float:
    """Seconds past its due time before the sweeper re-drives a job re-driven
    ``redrives`` times already: ``grace * 2 ** min(redrives, MAX_BACKOFF_DOUBLINGS)``."""
    return grace * float(2 ** min(max(redrives, 0), MAX_BACKOFF_DOUBLINGS))
