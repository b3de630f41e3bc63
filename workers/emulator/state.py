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

__all__ = ["LOG_ENTRY", "MAX_BODY", "MAX_LOGGED_REQUESTS", "STATE", "State"]

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
        # Scripted poll answers (``force-scripted-<name>``): name -> (HTTP status, body).
        self.answers: dict[str, tuple[int, bytes]] = {}

    def log_request(self, method: str, path: str) -> dict[str, Any]:
        """Log a ``/v1/...`` request as it arrives; the caller fills in how it ended.

        Logged in arrival order, and visible while still in progress (a hung request has
        ``status`` and ``done_ts`` null until it is answered).
        """
        entry: dict[str, Any] = {
            "ts": time.time(),
            "method": method,
            "path": path,
            "status": None,
            "fault": None,
            "retry_after": None,
            "done_ts": None,
        }
        self.requests.append(entry)
        return entry

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
        self.answers.clear()


STATE = web.AppKey("state", State)
# The largest request body accepted, in bytes (a multipart upload counts all its parts).
MAX_BODY = web.AppKey("max_body", int)
# A request's entry in the request log, kept on the request while it is served.
LOG_ENTRY = "emulator_log_entry"
