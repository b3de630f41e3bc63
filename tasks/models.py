"""Typed objects for what the API answers and what the pipeline stores.

Raw JSON is parsed into these the moment it leaves ``requests`` (see ``client.py``); nothing
deeper in the pipeline handles dicts, except the raw ``result`` kept verbatim for the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "FINAL_JOB_STATUSES",
    "Generation",
    "JobStatus",
    "Phase",
    "Segment",
    "Transcript",
    "Usage",
    "Word",
    "phase_of",
]

JSONDict = dict[str, Any]


class Phase(StrEnum):
    """Where a server-side generation stands, whatever word the server used for it."""

    PENDING = "pending"
    COMPLETED = "completed"
    ERROR = "error"


# Every word the vendor's pages use for "not finished yet". A status outside both sets is
# *not* an error: it is logged and polled as pending until the job's deadline.
PENDING_STATUSES = frozenset({"queued", "generating", "waiting", "active", "processing"})
COMPLETED_STATUSES = frozenset({"completed"})
ERROR_STATUSES = frozenset({"error", "failed"})


def phase_of(status: str) -> Phase:
    """Map a server status word to a ``Phase``; unknown words count as pending."""
    if status in COMPLETED_STATUSES:
        return Phase.COMPLETED
    if status in ERROR_STATUSES:
        return Phase.ERROR
    return Phase.PENDING


@dataclass(frozen=True, slots=True)
class Generation:
    """One answer of ``GET /v1/stt/{id}`` (or of the create call), in either envelope."""

    generation_id: str
    status: str
    result: JSONDict | None = None
    error: str | None = None
    request_id: str | None = None

    @property
    def phase(self) -> Phase:
        return phase_of(self.status)

    @property
    def known_status(self) -> bool:
        return self.status in PENDING_STATUSES | COMPLETED_STATUSES | ERROR_STATUSES


class JobStatus(StrEnum):
    """A job's status in our store (not the server's word)."""

    PENDING = "pending"  # accepted by transcribe(), submit not yet done
    SUBMITTED = "submitted"  # generation_id recorded, polling
    COMPLETED = "completed"  # server finished, transcript stored
    ERROR = "error"  # server finished with status error
    FAILED = "failed"  # a permanent error on our side of the wire (400/401/404/malformed)
    TIMEOUT = "timeout"  # the poll deadline passed before the server finished


FINAL_JOB_STATUSES = frozenset(
    {JobStatus.COMPLETED, JobStatus.ERROR, JobStatus.FAILED, JobStatus.TIMEOUT}
)


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start: float
    end: float
    confidence: float | None = None
    speaker: str | None = None


@dataclass(frozen=True, slots=True)
class Segment:
    """A sentence, paragraph or utterance with its time span."""

    text: str
    start: float
    end: float
    speaker: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Billing-relevant figures. Token fields for token-priced models, seconds for the rest."""

    input_tokens: int | None = None
    audio_tokens: int | None = None
    text_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    billed_seconds: float | None = None
    audio_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Transcript:
    """The one shape all three result families normalize to."""

    text: str
    words: tuple[Word, ...] = ()
    segments: tuple[Segment, ...] = ()
    language: str | None = None
    usage: Usage = field(default_factory=Usage)
