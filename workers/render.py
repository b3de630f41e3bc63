"""How the CLI shows jobs: one-line summaries, details, tables, JSON and subtitles.

Everything shown may hold text from outside (the API's transcript, error and ids, a
callback receiver's reply): it passes ``tasks.redact.neutralize`` so an escape sequence
cannot clear the screen or forge a line, and one-line fields stay on one line.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

import click

from tasks.models import JobStatus, Segment, Transcript, Usage, Word
from tasks.redact import json_safe, neutralize, redact_url
from tasks.store import JobRecord
from tasks.subtitles import to_srt, to_vtt

__all__ = ["details", "record_json", "result", "summary", "table", "wait_with_progress"]


def record_json(record: JobRecord) -> dict[str, Any]:
    """The record as plain JSON (datetimes as ISO 8601)."""
    out: dict[str, Any] = {}
    for f in fields(record):
        value = getattr(record, f.name)
        out[f.name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _short(text: str | None, width: int = 60) -> str:
    text = neutralize((text or "").replace("\n", " "))
    return text if len(text) <= width else text[: width - 1] + "…"


def summary(record: JobRecord) -> str:
    detail = record.text if record.text is not None else record.error
    return (
        f"{neutralize(record.id)}  {record.status.value:<9}  {record.model:<30}  {_short(detail)}"
    )


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, float):
        return f"{value:.6g}"
    return neutralize(str(value))


def _cost(record: JobRecord) -> object:
    """The estimate, or "unpriced" for a completed job without one (never a silent 0)."""
    if record.cost_usd is None and record.status is JobStatus.COMPLETED:
        return "unpriced"
    return record.cost_usd


def details(record: JobRecord) -> str:
    rows = [
        ("id", record.id),
        ("status", record.status.value),
        ("model", record.model),
        ("url", redact_url(record.url)),
        ("generation_id", record.generation_id),
        ("server_status", record.server_status),
        ("error", record.error),
        ("polls", record.polls),
        ("submit_attempts", record.submit_attempts),
        # The length the poll schedule used, and whence: given, probed or api.
        (
            "duration",
            None
            if record.duration is None
            else f"{record.duration:g} s ({record.duration_source or 'unknown'})",
        ),
        ("audio_seconds", record.audio_seconds),
        ("billed_seconds", record.billed_seconds),
        ("input_tokens", record.input_tokens),
        ("audio_tokens", record.audio_tokens),
        ("text_tokens", record.text_tokens),
        ("output_tokens", record.output_tokens),
        ("total_tokens", record.total_tokens),
        ("cost_usd", _cost(record)),
        ("enqueued_at", record.enqueued_at),
        ("submitted_at", record.submitted_at),
        ("finished_at", record.finished_at),
        ("stored_at", record.stored_at),
        ("callback_url", redact_url(record.callback_url) if record.callback_url else None),
        ("callback_status", record.callback_status),
        ("callback_attempts", record.callback_attempts if record.callback_url else None),
        ("callback_error", record.callback_error),
        ("callback_delivered_at", record.callback_delivered_at),
        ("text", _short(record.text, 200) if record.text is not None else None),
    ]
    return "\n".join(f"{name:<21} {_fmt(value)}" for name, value in rows)


def table(records: Sequence[JobRecord]) -> str:
    if not records:
        return "no jobs"
    head = f"{'id':<32}  {'status':<9}  {'model':<30}  {'audio s':>8}  {'cost $':>9}  text/error"
    lines = [head]
    for r in records:
        audio = _fmt(r.audio_seconds or r.billed_seconds)
        lines.append(
            f"{neutralize(r.id):<32}  {r.status.value:<9}  {r.model:<30}  {audio:>8}  "
            f"{_fmt(_cost(r)):>9}  {_short(r.text if r.text is not None else r.error, 50)}"
        )
    return "\n".join(lines)


def to_transcript(record: JobRecord) -> Transcript:
    """Rebuild the normalized transcript from a stored row (never from ``raw_result``,
    which keeps only what these columns do not: tasks/slim.py).

    The durations come along so that a row without timings (a text-only model, or one
    pruned with ``--keep-text``) still makes a subtitle: one cue over the whole audio.
    """
    return Transcript(
        text=record.text or "",
        words=tuple(Word(**w) for w in record.words or ()),
        segments=tuple(Segment(**s) for s in record.segments or ()),
        usage=Usage(audio_seconds=record.audio_seconds, billed_seconds=record.billed_seconds),
    )


def result(record: JobRecord, fmt: str) -> str:
    """The transcript in ``fmt`` (text, json, srt, vtt); ``ValueError`` if there is none."""
    if fmt == "json":
        return json_safe(json.dumps(record_json(record), indent=2, ensure_ascii=False))
    if not record.done:
        raise ValueError(
            f"job {record.id} is {record.status.value}, not finished yet: no transcript "
            f"(stt-workers status {record.id})"
        )
    if record.text is None:
        raise ValueError(
            f"job {record.id} has no transcript "
            f"({record.status.value}: {_short(record.error, 500)})"
        )
    if fmt == "text":
        return neutralize(record.text, keep_lines=True)
    transcript = to_transcript(record)
    return neutralize(to_srt(transcript) if fmt == "srt" else to_vtt(transcript), keep_lines=True)


def wait_with_progress(
    job_ids: Sequence[str], *, timeout: float, check: Callable[[], None] | None = None
) -> list[JobRecord]:
    """Show a live progress bar until every job is final (or ``timeout``); return them.

    ``check`` runs before each look at the store; it raises to stop waiting (the demo
    uses it to notice at once that its worker or emulator died).
    """
    from tasks.runtime import get_store

    store = get_store()
    deadline = time.monotonic() + timeout
    done: dict[str, JobRecord] = {}
    with click.progressbar(length=len(job_ids), label="transcribing", file=sys.stderr) as bar:
        while len(done) < len(job_ids) and time.monotonic() < deadline:
            if check is not None:
                check()
            pending = [i for i in job_ids if i not in done]
            fresh = [r for r in store.get_many(pending) if r.done]
            for record in fresh:
                done[record.id] = record
            bar.update(len(fresh))
            if len(done) < len(job_ids):
                time.sleep(0.5)
    missing = [i for i in job_ids if i not in done]
    if missing:
        done.update((r.id, r) for r in store.get_many(missing))
    return [done[i] for i in job_ids if i in done]
