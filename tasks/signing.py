"""Sign completion callbacks, and verify them in the web app that receives them.

The scheme (the same idea as Stripe's and Slack's webhooks)::

    X-STT-Timestamp: <unix seconds when this attempt was sent>
    X-STT-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.".encode() + body)>

The HMAC covers the exact body bytes, so the receiver must verify the raw body before
parsing it (``request.body`` in Django, ``request.get_data()`` in Flask). The timestamp is
inside the signed bytes, so an attacker cannot refresh it; a receiver that rejects
timestamps more than ``DEFAULT_TOLERANCE`` seconds from its clock makes a captured request
useless after that window. Each delivery attempt is signed afresh with its own timestamp;
the body stays the same, so ``X-STT-Job-Id`` (also in the body as ``id``) lets a receiver
drop a duplicate delivery.

Only the standard library is imported here: a web app verifying callbacks pulls in
neither Celery nor SQLAlchemy.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

__all__ = [
    "DEFAULT_TOLERANCE",
    "JOB_ID_HEADER",
    "SIGNATURE_HEADER",
    "SIGNATURE_PREFIX",
    "TIMESTAMP_HEADER",
    "sign",
    "signature",
    "verify_signature",
]

SIGNATURE_HEADER = "X-STT-Signature"
TIMESTAMP_HEADER = "X-STT-Timestamp"
JOB_ID_HEADER = "X-STT-Job-Id"
SIGNATURE_PREFIX = "sha256="
# Five minutes either way: generous for clock skew between worker and web hosts, short
# enough that a replayed capture is stale.
DEFAULT_TOLERANCE = 300


def signature(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The ``X-STT-Signature`` value for ``body`` sent at ``timestamp``."""
    key = secret.encode() if isinstance(secret, str) else secret
    signed = f"{timestamp}.".encode() + body
    return SIGNATURE_PREFIX + hmac.new(key, signed, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The signature headers for one delivery attempt of ``body``."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: signature(secret, body, ts)}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup: Django's and Flask's header maps are, a plain dict is not."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def verify_signature(
    secret: str | bytes,
    body: bytes,
    headers: Mapping[str, str],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether ``body`` with these ``headers`` was signed with ``secret`` recently.

    False for a missing or malformed header, a timestamp more than ``tolerance`` seconds
    from ``now`` (either way), or a signature that does not match. The comparison is
    constant-time (``hmac.compare_digest``), so timing reveals nothing about the secret.
    """
    raw_ts = _header(headers, TIMESTAMP_HEADER)
    given = _header(headers, SIGNATURE_HEADER)
    if raw_ts is None or given is None:
        return False
    raw_ts = raw_ts.strip()
    if not (raw_ts.isascii() and raw_ts.isdigit()):
        return False
    timestamp = int(raw_ts)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = signature(secret, body, timestamp)
    return hmac.compare_digest(expected.encode(), given.strip().encode())
