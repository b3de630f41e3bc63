"""Server-side generations: their schedule, their status at any instant, their expiry.

A job's status is not advanced by a background task: it is a pure function of the clock and
the schedule fixed at creation (``queued`` until ``start``, ``generating`` until
``finish``, then final). That keeps the server cheap, and makes timing exact under load.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from enum import StrEnum

from workers.emulator.conventions import Forcing
from workers.emulator.models import Model

__all__ = ["Job", "JobStore", "Phase", "new_generation_id"]

_ID_ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 21  # like the documented example id "dzIgQQyw8KCfoI5clcbHZ"
MAX_TRACKED_SOURCES = 100_000  # per-URL create counters forget the oldest URL beyond this


def new_generation_id() -> str:
    """A fresh id shaped like the vendor's: 21 URL-safe alphanumerics, not a UUID."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(ID_LENGTH))


class Phase(StrEnum):
    """Where a job stands; each dialect has its own word for the two pending phases."""

    QUEUED = "queued"
    GENERATING = "generating"
    COMPLETED = "completed"
    ERROR = "error"

    @property
    def final(self) -> bool:
        return self in (Phase.COMPLETED, Phase.ERROR)


@dataclass(slots=True, eq=False)
class Job:
    """One generation. Mutable on purpose: only ``polls``, the first-final-poll time and the
    cache of encoded answers change after creation; everything else is set once.

    Times ending in ``_mono`` are ``time.monotonic()`` values (scheduling); ``created_wall``
    is epoch seconds, and ``wall()`` converts the rest for reporting.
    """

    generation_id: str
    model: Model
    source: str  # the transcript seed: the audio URL, or the uploaded bytes' hex SHA-256
    url: str | None  # None for a multipart upload
    duration: float
    audio_sha256: str
    language: str | None
    prompt: str | None
    temperature: float | None
    forcing: Forcing
    error_message: str | None  # set when the job is to end in status "error"
    created_wall: float
    created_mono: float
    start_mono: float
    finish_mono: float
    polls: int = 0
    first_final_poll_wall: float | None = None
    bodies: dict[tuple[str, Phase], bytes] = field(default_factory=dict)

    def phase(self, now_mono: float) -> Phase:
        if now_mono < self.start_mono:
            return Phase.QUEUED
        if now_mono < self.finish_mono:
            return Phase.GENERATING
        return Phase.ERROR if self.error_message is not None else Phase.COMPLETED

    def wall(self, mono: float) -> float:
        """Epoch seconds of a monotonic instant of this job's schedule."""
        return self.created_wall + (mono - self.created_mono)

    def expired(self, now_mono: float, retention: float) -> bool:
        return now_mono > self.finish_mono + retention


class JobStore:
    """All live jobs plus per-source create counters, bounded by retention and a cap."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self.create_calls: dict[str, int] = {}  # valid create requests per source
        self.jobs_created: dict[str, int] = {}  # generations actually created per source

    def __len__(self) -> int:
        return len(self._jobs)

    def add(self, job: Job) -> None:
        self._jobs[job.generation_id] = job
        _bump(self.jobs_created, job.source)

    def note_create_call(self, source: str) -> int:
        """Count a create call for ``source``; return how many there have been (this one too)."""
        return _bump(self.create_calls, source)

    def get(self, generation_id: str, now_mono: float, retention: float) -> Job | None:
        """The job, or None if unknown or finished more than ``retention`` seconds ago."""
        job = self._jobs.get(generation_id)
        if job is not None and job.expired(now_mono, retention):
            del self._jobs[generation_id]
            return None
        return job

    def forget(self, generation_id: str) -> bool:
        """Drop one job now, as if its retention had run out; whether it was known."""
        return self._jobs.pop(generation_id, None) is not None

    def all(self) -> list[Job]:
        return list(self._jobs.values())

    def purge(self, now_mono: float, retention: float) -> int:
        """Forget every expired job; return how many were dropped."""
        expired = [gid for gid, job in self._jobs.items() if job.expired(now_mono, retention)]
        for gid in expired:
            del self._jobs[gid]
        return len(expired)

    def clear(self) -> None:
        self._jobs.clear()
        self.create_calls.clear()
        self.jobs_created.clear()


def _bump(counter: dict[str, int], key: str) -> int:
    """Increment ``counter[key]``, evicting the oldest key when the cap is reached."""
    if key not in counter and len(counter) >= MAX_TRACKED_SOURCES:
        del counter[next(iter(counter))]
    counter[key] = counter.get(key, 0) + 1
    return counter[key]
