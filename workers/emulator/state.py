"""The one mutable object of a running emulator: current config, jobs, counters, dice.

Handlers read ``state.config`` once per request, so a concurrent admin update never mixes
two configurations inside one answer.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import aiohttp
from aiohttp import web

from workers.emulator.config import EmulatorConfig
from workers.emulator.faults import FaultDice
from workers.emulator.jobs import JobStore
from workers.emulator.stats import RequestStats

__all__ = ["FAULT", "MAX_LOGGED_REQUESTS", "STATE", "State"]

MAX_LOGGED_REQUESTS = 100_000  # the request log keeps the newest this many


class State:
    """Everything the handlers share; ``reset()`` returns it to how it started."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.startup_config = config
        self.config = config
        self.store = JobStore()
        self.stats = RequestStats()
        self.dice = FaultDice(config.seed)
        self.session: aiohttp.ClientSession | None = None  # for local audio downloads
        self.requests: deque[dict[str, Any]] = deque(maxlen=MAX_LOGGED_REQUESTS)

    def log_request(
        self,
        arrived: float,
        method: str,
        path: str,
        status: int | str,
        fault: str | None,
        retry_after: str | None,
    ) -> None:
        """One ``/v1/...`` request: when it arrived, how it was answered, which fault."""
        self.requests.append(
            {
                "ts": arrived,
                "method": method,
                "path": path,
                "status": status,
                "fault": fault,
                "retry_after": retry_after,
                "done_ts": time.time(),
            }
        )

    def reconfigure(self, config: EmulatorConfig, *, reseed: bool) -> None:
        """Swap in ``config``; ``reseed`` restarts the fault dice from ``config.seed``."""
        self.config = config
        if reseed:
            self.dice = FaultDice(config.seed)

    def reset(self) -> None:
        """Forget all jobs and counters; restore the start-up config and dice."""
        self.config = self.startup_config
        self.store.clear()
        self.stats = RequestStats()
        self.dice = FaultDice(self.config.seed)
        self.requests.clear()


STATE = web.AppKey("state", State)
# The fault drawn for a request, kept on the request for the request log.
FAULT = "emulator_fault"
