"""Seeded fault decisions: which request meets which fault, and how slow it is.

All randomness of the fault injection comes from one ``random.Random(seed)``, so the same
seed and the same sequence of requests give the same faults: a failing test can be re-run.
Per-URL forcing (``force-...`` markers) lives in ``conventions.py`` and is not random.
"""

from __future__ import annotations

import random
from enum import StrEnum

from workers.emulator.config import LOSING_FAULTS, REJECTING_FAULTS, FaultSpec

__all__ = ["Fault", "FaultDice"]


class Fault(StrEnum):
    """One injected failure; the value is the ``FaultSpec`` field holding its share."""

    HTTP_429 = "rate_429"
    HTTP_429_NO_RETRY_AFTER = "rate_429_no_retry_after"
    HTTP_500 = "rate_500"
    HTTP_502 = "rate_502"
    HTTP_503 = "rate_503"
    HTTP_504 = "rate_504"
    HANG = "rate_hang"
    DROP = "rate_drop"
    MALFORMED = "rate_malformed"

    @property
    def rejects(self) -> bool:
        """True if the request is refused before the service sees it (no side effects)."""
        return self.value in REJECTING_FAULTS

    @property
    def status(self) -> int | None:
        """The HTTP status this fault answers with, if it answers with an error status."""
        return _STATUS.get(self)


_STATUS = {
    Fault.HTTP_429: 429,
    Fault.HTTP_429_NO_RETRY_AFTER: 429,
    Fault.HTTP_500: 500,
    Fault.HTTP_502: 502,
    Fault.HTTP_503: 503,
    Fault.HTTP_504: 504,
}
_ORDER = tuple(Fault(name) for name in (*REJECTING_FAULTS, *LOSING_FAULTS))


class FaultDice:
    """The one seeded random source behind every fault decision."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def draw(self, spec: FaultSpec) -> Fault | None:
        """At most one fault for this request: one uniform draw over the laid-out shares."""
        u = self._rng.random()
        edge = 0.0
        for fault in _ORDER:
            edge += getattr(spec, fault.value)
            if u < edge:
                return fault
        return None

    def latency(self, spec: FaultSpec) -> float:
        """Added latency in seconds, uniform in ``spec.latency_ms``."""
        lo, hi = spec.latency_ms
        if hi <= 0:
            return 0.0
        return (lo if hi == lo else self._rng.uniform(lo, hi)) / 1000.0

    @property
    def rng(self) -> random.Random:
        """The same source, for the server's timing draws (``timing.server_times``)."""
        return self._rng

    def job_fails(self, spec: FaultSpec) -> bool:
        """Whether a newly created job should end in status ``error``."""
        return spec.rate_job_error > 0 and self._rng.random() < spec.rate_job_error
