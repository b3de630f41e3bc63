"""redact_text (URLs inside free text) and the readable task-argument view for Flower."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.monitoring import readable
from tasks.redact import redact_text

PRESIGNED = "https://b.s3.amazonaws.com/a.mp3?X-Amz-Signature=abc&X-Amz-Credential=AK"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            f"Failed to download {PRESIGNED}",
            "Failed to download https://b.s3.amazonaws.com/a.mp3?<redacted>",
        ),
        (
            f"fetch '{PRESIGNED}' failed",
            "fetch 'https://b.s3.amazonaws.com/a.mp3?<redacted>' failed",
        ),
        (f"({PRESIGNED}).", "(https://b.s3.amazonaws.com/a.mp3?<redacted>)."),
        ("https://u:pw@h.example/x#frag", "https://h.example/x"),
        ("HTTP 503: upstream busy", "HTTP 503: upstream busy"),
        ("no scheme: example.com/a?b=c", "no scheme: example.com/a?b=c"),
    ],
)
def test_redact_text(text: str, shown: str) -> None:
    assert redact_text(text) == shown


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_a_query_string_never_survives(prefix: str) -> None:
    assert "X-Amz" not in redact_text(f"{prefix} {PRESIGNED} tail").replace(prefix, "")


def test_readable_arguments_redact_and_show_deadlines_as_times() -> None:
    args = ({"job_id": "j1", "deadline": 1795657871.5, "error": f"cannot fetch {PRESIGNED}"},)
    shown = readable(args)
    assert shown == (
        {
            "job_id": "j1",
            "deadline": "2026-11-26T01:51:11+00:00",
            "error": "cannot fetch https://b.s3.amazonaws.com/a.mp3?<redacted>",
        },
    )
    assert readable(["x", 3, None]) == ["x", 3, None]
