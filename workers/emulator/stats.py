"""Request counters for the admin API: totals, per status, and per one-second bucket.

The per-second buckets let a test check a client-side global rate limit ("never more than N
creates in any second"). Only the last ``WINDOW_SECONDS`` buckets are kept, so memory stays
bounded however long the emulator runs.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["ENDPOINTS", "RequestStats"]

ENDPOINTS = ("create", "get")
WINDOW_SECONDS = 3600


class RequestStats:
    """Counts of API requests (``/v1/...``); admin requests are not counted."""

    def __init__(self) -> None:
        self.total = 0
        self.by_endpoint: Counter[str] = Counter()
        self.by_status: Counter[tuple[str, int | str]] = Counter()
        self.per_second: dict[str, dict[int, int]] = {e: {} for e in ENDPOINTS}

    def arrived(self, endpoint: str, epoch: float) -> None:
        """Count a request when it arrives (faulted and refused ones too)."""
        self.total += 1
        self.by_endpoint[endpoint] += 1
        buckets = self.per_second[endpoint]
        second = int(epoch)
        buckets[second] = buckets.get(second, 0) + 1

    def answered(self, endpoint: str, status: int | str) -> None:
        """Count how a request ended: an HTTP status, or ``"drop"``."""
        self.by_status[(endpoint, status)] += 1

    def trim(self, now_epoch: float) -> None:
        """Forget buckets older than the window."""
        oldest = int(now_epoch) - WINDOW_SECONDS
        for buckets in self.per_second.values():
            for second in [s for s in buckets if s < oldest]:
                del buckets[second]

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready counters. ``by_status`` keys read like ``"get 201"`` or
        ``"create drop"``; bucket keys are epoch seconds as strings."""
        every: Counter[int] = Counter()
        for buckets in self.per_second.values():
            every.update(buckets)
        per_second = {
            e: {str(s): n for s, n in sorted(b.items())} for e, b in self.per_second.items()
        }
        per_second["all"] = {str(s): n for s, n in sorted(every.items())}
        return {
            "total": self.total,
            "by_endpoint": dict(self.by_endpoint),
            "by_status": {f"{e} {s}": n for (e, s), n in sorted(self.by_status.items(), key=str)},
            "per_second": per_second,
            "max_per_second": {k: max(v.values(), default=0) for k, v in per_second.items()},
        }
