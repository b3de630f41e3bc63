"""Make values safe to show in logs and Flower: no secrets, no presigned query strings."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact_text", "redact_url"]

# A URL inside free text (an error message, a log line): scheme://, then up to whitespace
# or a quote. Only the query, fragment and user:password are cut, so the text stays useful.
_URL_IN_TEXT = re.compile(r"""[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'"<>]+""")


def redact_url(url: str) -> str:
    """Drop the query string and fragment (presigned URLs carry credentials there)
    and any user:password in the authority."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:  # not a number: keep nothing of it
        port = None
    if port:
        host = f"{host}:{port}"
    query = "<redacted>" if parts.query else ""
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def redact_text(text: str) -> str:
    """``text`` with every URL in it passed through ``redact_url``.

    Server error messages may quote the audio URL they could not fetch; this is applied
    where such text enters (``tasks.client``) and where task arguments are shown.
    """

    def one(match: re.Match[str]) -> str:
        url = match.group(0)
        kept = url.rstrip(".,;:)]}")  # sentence punctuation after a URL is not part of it
        return redact_url(kept) + url[len(kept) :]

    return _URL_IN_TEXT.sub(one, text)
