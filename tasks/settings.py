"""All configuration, read once from the environment into one frozen object.

Every knob has a default that runs locally, and a bad value fails at start-up with a
``ConfigurationError`` naming the variable, rather than somewhere deep in a task.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import TypeVar

from tasks.errors import ConfigurationError

__all__ = ["IPNetwork", "Settings", "debug_requested", "get_settings"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

T = TypeVar("T")

DEFAULT_API_BASE = "https://api.aimlapi.com"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
DEFAULT_DATABASE_URL = "sqlite:///stt-workers.sqlite3"
# An HMAC key shorter than this is guessable; 32 random bytes (token_urlsafe(32)) is typical.
MIN_SECRET_CHARS = 16
_SECRETS = ("api_key", "callback_secret")
# Seconds before Redis redelivers an unacked message; see tasks/celeryconfig.py for why 900.
DEFAULT_VISIBILITY_TIMEOUT = 900.0
# Countdowns one worker may hold in memory on a broker without delayed delivery (Redis):
# about 12 KB each, so this keeps a worker near 300 MB (docs/benchmarks.md, "Held
# countdowns"); beyond it the messages wait in the broker for this or another worker.
DEFAULT_ETA_TASK_LIMIT = 20_000


@dataclass(frozen=True, slots=True)
class Settings:
    """Process-wide settings. Field names map to ``ENV_NAMES`` below."""

    api_key: str | None = None
    api_base: str = DEFAULT_API_BASE
    broker_url: str = DEFAULT_BROKER_URL
    result_backend: str | None = None
    database_url: str = DEFAULT_DATABASE_URL
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    # Total seconds for one API request, connect + send + receive (tasks/deadline.py);
    # None: connect_timeout + read_timeout.
    request_timeout: float | None = None
    # Poll schedule (see tasks/polling.py for why these defaults).
    poll_first_delay: float = 8.0
    poll_factor: float = 1.5
    poll_max_delay: float = 10.0
    poll_jitter: float = 0.25
    poll_deadline: float = 1800.0
    # Submit retries on transient errors.
    submit_max_retries: int = 8
    store_max_retries: int = 20
    # Completion callbacks (tasks/callbacks.py): the HMAC key shared with the web app, the
    # attempts before a delivery counts as failed, and the receiver's time to answer.
    callback_secret: str | None = None
    callback_max_attempts: int = 10
    callback_timeout: float = 10.0
    # Networks callbacks may reach although they are not public (loopback, private, ...):
    # for deployments whose web app is inside their own network (tasks/netguard.py).
    callback_allow_networks: tuple[IPNetwork, ...] = ()
    # The CLI shows tracebacks at DEBUG; workers log at this level unless told otherwise.
    log_level: str = "INFO"
    # Fairness to the API, shared by every worker (docs/rate-limits.md): requests/s to the
    # API and jobs submitted but not yet finished. 0 means no limit.
    api_rate_limit: float = 0.0
    max_in_flight: int = 0
    rate_limit_redis_url: str | None = None
    # Redis redelivers a message not acked within this many seconds (a killed worker's).
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT
    # Celery's worker_eta_task_limit; 0 means no limit (only sensible on RabbitMQ).
    eta_task_limit: int = DEFAULT_ETA_TASK_LIMIT
    # A TOML or JSON file of per-model prices over the catalog's (tasks/pricing.py).
    prices_file: str | None = None
    # Serve Prometheus metrics on this port from workers and beat (tasks/metrics.py); 0: off.
    metrics_port: int = 0
    # The sweeper (tasks/sweep.py): how often beat sends it, and how far past its due time
    # a job's step must be before it is re-driven. Every step records when it is next due,
    # so the grace only covers queueing and clock skew between hosts (docs/reliability.md).
    sweep_interval: float = 30.0
    sweep_grace: float = 30.0
    # A job not submitted within this many seconds of being enqueued ends as "timeout"
    # (a backlog behind STT_MAX_IN_FLIGHT or a long outage of the API, not a lost message).
    submit_deadline: float = 86400.0
    # Retention (tasks/retention.py): beat prunes finished jobs older than this many days;
    # 0 keeps every job forever. With keep_text, old jobs keep their text and usage.
    retention_days: float = 0.0
    retention_keep_text: bool = False
    # Duration-aware polling (docs/polling.md): probe the audio's first bytes before the
    # submit when the caller gave no duration (one range request, SSRF-guarded like
    # callbacks, no credentials); off: unknown duration, today's schedule. And how often
    # beat refits each model's speed from finished jobs (tasks/learn.py); 0: never.
    probe_audio: bool = True
    speed_fit_interval: float = 600.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default ``os.environ``); raise on a bad value."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            name = ENV_NAMES[f.name]
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[f.name] = _PARSERS.get(f.name, _as_str)(name, raw)
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    @property
    def api_deadline(self) -> float:
        """The total time one API request may take (``STT_REQUEST_TIMEOUT``)."""
        if self.request_timeout:
            return self.request_timeout
        return self.connect_timeout + self.read_timeout

    def validate(self) -> None:
        _check_database_url(self.database_url)
        if not self.api_base.startswith(("http://", "https://")):
            raise ConfigurationError(
                "AIML_API_BASE", f"must be an http(s) URL, got {self.api_base!r}"
            )
        if self.poll_first_delay <= 0 or self.poll_max_delay < self.poll_first_delay:
            raise ConfigurationError(
                "STT_POLL_MAX_DELAY", "must be >= STT_POLL_FIRST_DELAY, both positive"
            )
        if not 0 <= self.poll_jitter < 1:
            raise ConfigurationError("STT_POLL_JITTER", "must be in [0, 1)")
        if self.poll_factor < 1:
            raise ConfigurationError("STT_POLL_FACTOR", "must be >= 1")
        if self.callback_secret is not None and len(self.callback_secret) < MIN_SECRET_CHARS:
            raise ConfigurationError(
                "STT_CALLBACK_SECRET", f"must be at least {MIN_SECRET_CHARS} characters"
            )
        if self.callback_max_attempts < 1:
            raise ConfigurationError("STT_CALLBACK_MAX_ATTEMPTS", "must be at least 1")
        if self.rate_limit_redis_url is not None and not self.rate_limit_redis_url.startswith(
            _REDIS_SCHEMES
        ):
            raise ConfigurationError("STT_RATE_LIMIT_REDIS_URL", "must be a redis:// URL")
        if (self.api_rate_limit or self.max_in_flight) and self.limiter_redis_url is None:
            raise ConfigurationError(
                "STT_RATE_LIMIT_REDIS_URL",
                "is needed for STT_API_RATE_LIMIT / STT_MAX_IN_FLIGHT when the broker is not Redis",
            )
        if self.sweep_interval <= 0:
            raise ConfigurationError("STT_SWEEP_INTERVAL", "must be positive")
        # With acks_late a poll waiting on its countdown is unacked the whole time: a
        # timeout below the longest countdown would redeliver healthy polls.
        if self.visibility_timeout <= self.poll_max_delay:
            raise ConfigurationError(
                "STT_VISIBILITY_TIMEOUT",
                f"must be larger than STT_POLL_MAX_DELAY ({self.poll_max_delay:g} s), "
                f"got {self.visibility_timeout:g}",
            )

        if self.metrics_port > 65535:
            raise ConfigurationError(
                "STT_METRICS_PORT", f"must be a TCP port (1-65535), got {self.metrics_port}"
            )

    @property
    def limiter_redis_url(self) -> str | None:
        """Where the shared limits live: their own URL, else the broker's if it is Redis."""
        if self.rate_limit_redis_url:
            return self.rate_limit_redis_url
        return self.broker_url if self.broker_url.startswith(_REDIS_SCHEMES) else None

    def require_callback_secret(self) -> str:
        """The callback signing key, or a ``ConfigurationError``: callbacks are never sent
        unsigned, since the receiver could not tell them from a forgery."""
        if not self.callback_secret:
            raise ConfigurationError(
                "STT_CALLBACK_SECRET", "is not set; it is needed to sign completion callbacks"
            )
        return self.callback_secret

    def require_api_key(self) -> str:
        """The API key, or a ``ConfigurationError`` (workers need it; web apps do not)."""
        if not self.api_key or not self.api_key.strip():  # "   " from an env file is unset too
            raise ConfigurationError("AIML_API_KEY", "is not set; the worker cannot call the API")
        return self.api_key

    def __repr__(self) -> str:  # never print the key or the callback secret
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _SECRETS}
        for name in _SECRETS:
            shown[name] = "***" if getattr(self, name) else None
        return f"Settings({shown})"


ENV_NAMES: dict[str, str] = {
    "api_key": "AIML_API_KEY",
    "api_base": "AIML_API_BASE",
    "broker_url": "STT_BROKER_URL",
    "result_backend": "STT_RESULT_BACKEND",
    "database_url": "STT_DATABASE_URL",
    "connect_timeout": "STT_CONNECT_TIMEOUT",
    "read_timeout": "STT_READ_TIMEOUT",
    "request_timeout": "STT_REQUEST_TIMEOUT",
    "poll_first_delay": "STT_POLL_FIRST_DELAY",
    "poll_factor": "STT_POLL_FACTOR",
    "poll_max_delay": "STT_POLL_MAX_DELAY",
    "poll_jitter": "STT_POLL_JITTER",
    "poll_deadline": "STT_POLL_DEADLINE",
    "submit_max_retries": "STT_SUBMIT_MAX_RETRIES",
    "store_max_retries": "STT_STORE_MAX_RETRIES",
    "callback_secret": "STT_CALLBACK_SECRET",
    "callback_max_attempts": "STT_CALLBACK_MAX_ATTEMPTS",
    "callback_timeout": "STT_CALLBACK_TIMEOUT",
    "callback_allow_networks": "STT_CALLBACK_ALLOW_NETWORKS",
    "log_level": "STT_LOG_LEVEL",
    "api_rate_limit": "STT_API_RATE_LIMIT",
    "max_in_flight": "STT_MAX_IN_FLIGHT",
    "rate_limit_redis_url": "STT_RATE_LIMIT_REDIS_URL",
    "visibility_timeout": "STT_VISIBILITY_TIMEOUT",
    "eta_task_limit": "STT_ETA_TASK_LIMIT",
    "prices_file": "STT_PRICES_FILE",
    "metrics_port": "STT_METRICS_PORT",
    "sweep_interval": "STT_SWEEP_INTERVAL",
    "sweep_grace": "STT_SWEEP_GRACE",
    "submit_deadline": "STT_SUBMIT_DEADLINE",
    "retention_days": "STT_RETENTION_DAYS",
    "retention_keep_text": "STT_RETENTION_KEEP_TEXT",
    "probe_audio": "STT_PROBE_AUDIO",
    "speed_fit_interval": "STT_SPEED_FIT_INTERVAL",
}

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def _as_str(_name: str, raw: str) -> str:
    return raw


def _number(kind: Callable[[str], T]) -> Callable[[str, str], T]:
    def parse(name: str, raw: str) -> T:
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigurationError(name, f"must be a {kind.__name__}, got {raw!r}") from None
        if value < 0:  # type: ignore[operator]
            raise ConfigurationError(name, f"must not be negative, got {raw!r}")
        return value

    return parse


def _networks(name: str, raw: str) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDRs (``10.0.0.0/8, fd00::/8``); a bare address is one host."""
    networks = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigurationError(
                name, f"must be comma-separated networks like 10.0.0.0/8, got {part!r}"
            ) from None
    return tuple(networks)


def _log_level(name: str, raw: str) -> str:
    level = raw.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigurationError(name, f"must be DEBUG, INFO, WARNING or ERROR, got {raw!r}")
    return level


def _check_database_url(url: str) -> None:
    """A URL SQLAlchemy cannot parse fails here, naming the variable, not deep in a task."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(url).get_dialect()
    except NoSuchModuleError:
        raise ConfigurationError(
            "STT_DATABASE_URL",
            f"names an unknown database kind {url.split(':', 1)[0]!r}; expected sqlite:/// "
            "or postgresql+psycopg://",
        ) from None
    except (ArgumentError, ValueError):
        shown = url.split("://", 1)[0] + "://..." if "://" in url else repr(url[:40])
        raise ConfigurationError(
            "STT_DATABASE_URL",
            f"is not a database URL ({shown}); expected e.g. sqlite:///jobs.sqlite3 or "
            "postgresql+psycopg://user@host/db",
        ) from None


def debug_requested(env: Mapping[str, str] | None = None) -> bool:
    """``STT_LOG_LEVEL=DEBUG``, read on its own: the CLI asks this while reporting a
    failure, when the other settings may be the thing that failed to parse."""
    env = os.environ if env is None else env
    return env.get(ENV_NAMES["log_level"], "").strip().upper() == "DEBUG"


_TRUE, _FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})


def _flag(name: str, raw: str) -> bool:
    word = raw.strip().lower()
    if word not in _TRUE | _FALSE:
        raise ConfigurationError(name, f"must be true or false (1/0, yes/no), got {raw!r}")
    return word in _TRUE


_PARSERS: dict[str, Callable[[str, str], object]] = {
    "request_timeout": _number(float),
    "callback_allow_networks": _networks,
    "log_level": _log_level,
    "connect_timeout": _number(float),
    "read_timeout": _number(float),
    "poll_first_delay": _number(float),
    "poll_factor": _number(float),
    "poll_max_delay": _number(float),
    "poll_jitter": _number(float),
    "poll_deadline": _number(float),
    "submit_max_retries": _number(int),
    "store_max_retries": _number(int),
    "callback_max_attempts": _number(int),
    "callback_timeout": _number(float),
    "api_rate_limit": _number(float),
    "max_in_flight": _number(int),
    "visibility_timeout": _number(float),
    "eta_task_limit": _number(int),
    "metrics_port": _number(int),
    "sweep_interval": _number(float),
    "sweep_grace": _number(float),
    "submit_deadline": _number(float),
    "retention_days": _number(float),
    "retention_keep_text": _flag,
    "probe_audio": _flag,
    "speed_fit_interval": _number(float),
}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings.from_env()
