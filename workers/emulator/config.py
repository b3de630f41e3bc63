"""The emulator's knobs: keys, timing, retention, dialect and faults, as frozen values.

One ``EmulatorConfig`` is built from the command line at start-up; the admin endpoint
``POST /_emulator/config`` derives a new one with ``updated()`` and swaps it in, so a
request always sees one consistent configuration and ``reset`` can restore the start-up one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from workers.emulator.models import DOCUMENTED_MODELS, Model, parse_models

__all__ = [
    "DEFAULT_API_KEY",
    "Dialect",
    "EmulatorConfig",
    "FaultSpec",
    "parse_fault_assignment",
]

DEFAULT_API_KEY = "sk-emulator-key"


class Dialect(StrEnum):
    """Which variant of the poll answer the emulator speaks.

    The vendor's pages disagree: the contract uses ``queued``/``generating`` inside
    ``{generation_id, status, result, error}``; other pages show ``waiting``/``active`` and a
    newer ``{id, status, output, error: {name, message} | null}`` envelope. Clients must
    survive all four combinations, so each is one switch away.
    """

    CLASSIC = "classic"  # contract: generation_id/result, queued -> generating
    WAITING = "waiting"  # contract envelope, waiting -> active
    V2 = "v2"  # id/output/error{name,message}, waiting -> active
    V2_QUEUED = "v2-queued"  # id/output/error{name,message}, queued -> generating

    @property
    def pending_words(self) -> tuple[str, str]:
        """The words for (waiting in the queue, being transcribed)."""
        if self in (Dialect.WAITING, Dialect.V2):
            return ("waiting", "active")
        return ("queued", "generating")

    @property
    def new_envelope(self) -> bool:
        return self in (Dialect.V2, Dialect.V2_QUEUED)


# Faults that refuse a request before the service sees it (no job is created, no poll
# counted), in the order their shares are laid out on [0, 1).
REJECTING_FAULTS = ("rate_429", "rate_429_no_retry_after", "rate_500", "rate_502", "rate_503")
# Faults that lose the answer after the service processed the request (a create still makes
# its job): the gateway times out, the answer is late, cut off, or garbled.
LOSING_FAULTS = ("rate_504", "rate_hang", "rate_drop", "rate_malformed")


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """Shares (0..1) of requests that meet each fault, plus the faults' parameters.

    The ``rate_*`` shares except ``rate_job_error`` are exclusive: one uniform draw per
    request picks at most one of them, so their sum must not exceed 1.
    """

    rate_429: float = 0.0  # 429 with a Retry-After header
    rate_429_no_retry_after: float = 0.0  # 429 without one
    rate_500: float = 0.0
    rate_502: float = 0.0
    rate_503: float = 0.0
    rate_504: float = 0.0
    rate_hang: float = 0.0  # answer only after hang_seconds (past a client's timeout)
    rate_drop: float = 0.0  # close the connection without answering
    rate_malformed: float = 0.0  # 201 with a truncated, non-JSON body
    rate_job_error: float = 0.0  # create only: the job ends in status "error"
    retry_after: int = 1  # seconds sent in Retry-After
    hang_seconds: float = 30.0
    latency_ms: tuple[float, float] = (0.0, 0.0)  # added to every request; uniform lo..hi
    job_error_message: str = "Transcription failed: the model could not process the audio"

    def __post_init__(self) -> None:
        for name in (*REJECTING_FAULTS, *LOSING_FAULTS, "rate_job_error"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if sum(getattr(self, n) for n in (*REJECTING_FAULTS, *LOSING_FAULTS)) > 1.0 + 1e-9:
            raise ValueError("the rate_* fault shares must add up to at most 1")
        lo, hi = self.latency_ms
        if lo < 0 or hi < lo:
            raise ValueError(f"latency_ms must be 0 <= lo <= hi, got {self.latency_ms!r}")
        if self.retry_after < 0 or self.hang_seconds < 0:
            raise ValueError("retry_after and hang_seconds must not be negative")

    @property
    def active(self) -> bool:
        """Whether a request needs any fault work at all (the hot path skips it if not)."""
        return self != _NO_FAULTS

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> FaultSpec:
        """Build from JSON-ish values; unknown keys and bad values raise ``ValueError``."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, raw in values.items():
            if key not in known:
                raise ValueError(f"unknown fault setting {key!r}; known: {sorted(known)}")
            kwargs[key] = _coerce_fault_value(key, raw)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["latency_ms"] = list(self.latency_ms)
        return out


_NO_FAULTS = FaultSpec()


def _coerce_fault_value(key: str, raw: Any) -> Any:
    if key == "job_error_message":
        if not isinstance(raw, str):
            raise ValueError("job_error_message must be a string")
        return raw
    if key == "latency_ms":
        return _latency(raw)
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError(f"{key} must be a number, got {raw!r}")
    try:
        number = float(raw)
    except ValueError:
        raise ValueError(f"{key} must be a number, got {raw!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{key} must be finite")
    return math.ceil(number) if key == "retry_after" else number


def _latency(raw: Any) -> tuple[float, float]:
    """``200``, ``"200"``, ``"200-800"`` or ``[200, 800]`` -> (lo, hi) milliseconds."""
    if isinstance(raw, str) and "-" in raw.strip().lstrip("-"):
        lo, _, hi = raw.partition("-")
        parts: list[Any] = [lo, hi]
    elif isinstance(raw, list | tuple):
        parts = list(raw)
    else:
        parts = [raw, raw]
    if len(parts) != 2:
        raise ValueError(f"latency_ms must be a number or a [lo, hi] pair, got {raw!r}")
    try:
        lo_f, hi_f = float(parts[0]), float(parts[1])
    except (TypeError, ValueError):
        raise ValueError(f"latency_ms must be numeric, got {raw!r}") from None
    return (lo_f, hi_f)


def parse_fault_assignment(text: str) -> tuple[str, Any]:
    """Split a CLI ``KEY=VALUE`` fault setting; the value is coerced later by ``FaultSpec``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Everything that shapes the emulator's answers. Times are in seconds.

    A job's processing time is ``fixed`` when set, otherwise ``speed * audio duration``; it
    spends ``queue_delay`` in the first pending state before that. ``spread``,
    ``queue_spread`` and the straggler settings make both random (``timing.py``). Timing
    changes apply to jobs created afterwards (a job's schedule is fixed when it is created).
    """

    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    retention: float = 3600.0
    speed: float = 0.1
    fixed: float | None = None
    queue_delay: float = 0.5
    queue_spread: float = 0.0
    spread: float = 0.0
    straggler_rate: float = 0.0
    straggler_factor: float = 3.0
    dialect: Dialect = Dialect.CLASSIC
    seed: int = 0
    faults: FaultSpec = field(default_factory=FaultSpec)
    faults_create: FaultSpec | None = None  # overrides ``faults`` for POST /v1/stt/create
    faults_get: FaultSpec | None = None  # overrides ``faults`` for GET /v1/stt/{id}
    # Models served beyond the documented ones (a vendor that added one since).
    models: tuple[Model, ...] = ()
    auth_headers: frozenset[str] = field(init=False, repr=False, compare=False)
    _served: Mapping[str, Model] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.api_keys or any(not k for k in self.api_keys):
            raise ValueError("at least one non-empty API key is required")
        if self.retention <= 0:
            raise ValueError("retention must be positive")
        if self.speed < 0 or self.queue_delay < 0 or (self.fixed is not None and self.fixed < 0):
            raise ValueError("speed, fixed and queue_delay must not be negative")
        if self.queue_spread < 0 or self.spread < 0 or self.straggler_factor < 1:
            raise ValueError("queue_spread and spread must not be negative, straggler_factor >= 1")
        if not 0 <= self.straggler_rate <= 1:
            raise ValueError("straggler_rate must be in [0, 1]")
        # Precomputed so the auth check on the hot path is one set lookup.
        object.__setattr__(self, "auth_headers", frozenset(f"Bearer {k}" for k in self.api_keys))
        object.__setattr__(self, "_served", {**DOCUMENTED_MODELS, **{m.id: m for m in self.models}})

    def model(self, model_id: str) -> Model | None:
        """The model served under ``model_id``, or ``None`` (the create call answers 400)."""
        return self._served.get(model_id)

    def processing_seconds(self, duration: float) -> float:
        return self.fixed if self.fixed is not None else self.speed * duration

    def faults_for(self, endpoint: str) -> FaultSpec:
        """The fault spec for ``"create"`` or ``"get"``."""
        override = self.faults_create if endpoint == "create" else self.faults_get
        return override if override is not None else self.faults

    def updated(self, settings: Mapping[str, Any]) -> EmulatorConfig:
        """A copy with ``settings`` applied (the admin API's JSON); ``ValueError`` if bad.

        Fault specs are replaced as a whole, not merged, so a test's faults never linger.
        """
        changes: dict[str, Any] = {}
        for key, value in settings.items():
            if key in ("faults", "faults_create", "faults_get"):
                if value is None and key != "faults":
                    changes[key] = None
                elif isinstance(value, Mapping):
                    changes[key] = FaultSpec.from_mapping(value)
                else:
                    raise ValueError(f"{key} must be an object of fault settings")
            elif key == "dialect":
                try:
                    changes[key] = Dialect(value)
                except ValueError:
                    choices = [d.value for d in Dialect]
                    raise ValueError(f"dialect must be one of {choices}") from None
            elif key == "api_keys":
                if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
                    raise ValueError("api_keys must be a list of strings")
                changes[key] = tuple(value)
            elif key == "fixed" and value is None:
                changes[key] = None
            elif key in _NUMBERS:
                changes[key] = _number(key, value)
            elif key == "models":
                if not isinstance(value, Mapping):
                    raise ValueError("models must be an object of {model id: family}")
                changes[key] = parse_models(value)
            elif key == "seed":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError("seed must be an integer")
                changes[key] = value
            else:
                raise ValueError(f"unknown setting {key!r}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as the admin API shows it (keys are not secret here)."""
        return {
            "api_keys": list(self.api_keys),
            "retention": self.retention,
            "speed": self.speed,
            "fixed": self.fixed,
            "queue_delay": self.queue_delay,
            "queue_spread": self.queue_spread,
            "spread": self.spread,
            "straggler_rate": self.straggler_rate,
            "straggler_factor": self.straggler_factor,
            "dialect": self.dialect.value,
            "seed": self.seed,
            "faults": self.faults.to_dict(),
            "faults_create": self.faults_create.to_dict() if self.faults_create else None,
            "faults_get": self.faults_get.to_dict() if self.faults_get else None,
            "models": {m.id: m.family.value for m in self.models},
        }


_NUMBERS = (
    "retention",
    "speed",
    "fixed",
    "queue_delay",
    "queue_spread",
    "spread",
    "straggler_rate",
    "straggler_factor",
)


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, got {value!r}")
    return float(value)
