"""How the CLI shows reports: the stats, usage and models tables, JSON, CSV, the usage chart."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from tasks.catalog import Price
from tasks.pricing import PricedModel
from tasks.reports import JobStats, Summary, UsageReport, UsageRow

__all__ = [
    "models_json",
    "models_text",
    "require_plotting",
    "stats_json",
    "stats_text",
    "usage_csv",
    "usage_plot",
    "usage_text",
]

PLOT_MISSING = "--plot needs matplotlib: pip install 'aiml-stt-workers[plot]'"


def _when(moment: datetime | None) -> str:
    return "the beginning" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(value: float | None) -> str:
    """Short and readable at every scale: 0.412s, 42.0s, 3m05s, 2h07m."""
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.3f}s"
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}" if value % 1 else f"{value:.0f}"


def stats_text(report: JobStats) -> str:
    width = max(len(s) for s in report.counts)
    lines = [f"jobs enqueued since {_when(report.since)}: {report.total}"]
    lines += [f"  {status:<{width}}  {n:>8}" for status, n in report.counts.items()]
    lines.append("")
    done = report.enqueue_to_stored.count
    lines.append(f"completed jobs stored since {_when(report.since)}: {done}")
    if done:
        lines.append(f"  {'latency':<20}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}")
        for label, dist in (
            ("enqueue -> stored", report.enqueue_to_stored),
            ("finish -> stored", report.finish_to_stored),
        ):
            cells = (dist.p50, dist.p90, dist.p99, dist.max)
            lines.append(f"  {label:<20}" + "".join(f"{_seconds(v):>10}" for v in cells))
        polls = report.polls
        lines.append(
            f"  {'polls per job':<20}{'mean':>10}{'p50':>10}{'p90':>10}{'max':>10}\n"
            f"  {'':<20}"
            + "".join(f"{_number(v):>10}" for v in (polls.mean, polls.p50, polls.p90, polls.max))
        )
    hour = report.last_hour
    lines.append("")
    lines.append(
        f"last hour: {hour.stored} jobs stored ({hour.completed} completed), "
        f"{hour.per_minute:.2f} jobs/min"
    )
    return "\n".join(lines)


def _summary_json(summary: Summary) -> dict[str, Any]:
    return asdict(summary)


def stats_json(report: JobStats) -> dict[str, Any]:
    """Plain JSON: timestamps as ISO 8601, durations in seconds."""
    hour = report.last_hour
    return {
        "since": report.since.isoformat() if report.since else None,
        "now": report.now.isoformat(),
        "counts": report.counts,
        "total": report.total,
        "latency_seconds": {
            "enqueue_to_stored": _summary_json(report.enqueue_to_stored),
            "finish_to_stored": _summary_json(report.finish_to_stored),
        },
        "polls": _summary_json(report.polls),
        "last_hour": {
            "start": hour.start.isoformat(),
            "end": hour.end.isoformat(),
            "stored": hour.stored,
            "completed": hour.completed,
            "per_minute": hour.per_minute,
        },
    }


_USAGE_COLUMNS = [
    ("jobs", "jobs", "{:d}"),
    ("completed", "done", "{:d}"),
    ("audio_minutes", "audio min", "{:.2f}"),
    ("input_tokens", "in tok", "{:d}"),
    ("audio_tokens", "audio tok", "{:d}"),
    ("text_tokens", "text tok", "{:d}"),
    ("output_tokens", "out tok", "{:d}"),
    ("total_tokens", "total tok", "{:d}"),
    ("cost_usd", "cost $", "{:.4f}"),
]
# Shown only when some completed job has no cost: how many of a group's are not in "cost $".
_UNPRICED_COLUMN = ("unpriced", "unpriced", "{:d}")
# CSV keeps what a spreadsheet needs, not float noise: minutes to the 1/1000 (60 ms), USD
# to the micro-dollar, as precise as tasks.pricing estimates.
_CSV_DIGITS = {"audio_minutes": 3, "cost_usd": 6}


def _usage_cell(row: UsageRow, name: str, fmt: str) -> str:
    """A table cell; unknown minutes or cost say so instead of printing 0."""
    value = getattr(row, name)
    if value is not None:
        return fmt.format(value)
    if name == "cost_usd" and row.unpriced:
        return "unpriced"
    return "unknown" if name == "audio_minutes" and row.completed else "-"


def usage_text(report: UsageReport) -> str:
    if not report.rows:
        return f"no finished jobs between {_when(report.since)} and {_until(report.until)}"
    rows = [*report.rows, report.total]
    columns = [*_USAGE_COLUMNS, *([_UNPRICED_COLUMN] if report.total.unpriced else [])]
    width = max(len(report.by.value), *(len(r.group) for r in rows))
    cells = [[_usage_cell(r, name, fmt) for name, _, fmt in columns] for r in rows]
    widths = [max(len(head), *(len(c[i]) for c in cells)) for i, (_, head, _) in enumerate(columns)]
    head = f"{report.by.value:<{width}}" + "".join(
        f"  {h:>{w}}" for (_, h, _), w in zip(columns, widths, strict=True)
    )
    out = [head]
    for index, (row, values) in enumerate(zip(rows, cells, strict=True)):
        if index == len(rows) - 1:
            out.append("-" * len(head))
        out.append(
            f"{row.group:<{width}}"
            + "".join(f"  {v:>{w}}" for v, w in zip(values, widths, strict=True))
        )
    return "\n".join(out)


def _until(moment: datetime | None) -> str:
    return "now" if moment is None else _when(moment)


def _span(report: UsageReport) -> str:
    if report.since is None and report.until is None:
        return "all finished jobs"
    return f"jobs stored from {_when(report.since)} to {_until(report.until)}"


def _csv_value(row: UsageRow, name: str) -> object:
    value = getattr(row, name)
    if value is None:
        return ""  # unknown: an empty cell, never a 0 a sum would take for a fact
    digits = _CSV_DIGITS.get(name)
    return value if digits is None else f"{value:.{digits}f}"


def usage_csv(report: UsageReport) -> str:
    """One row per group then a ``total`` row; unknown values are empty cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = [f.name for f in fields(UsageRow)]
    writer.writerow([report.by.value, *names[1:]])
    for row in (*report.rows, report.total):
        writer.writerow([row.group, *(_csv_value(row, name) for name in names[1:])])
    return buffer.getvalue()


def require_plotting() -> None:
    """Fail before any work when ``--plot`` is asked for and matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise click.ClickException(PLOT_MISSING) from None


def usage_plot(report: UsageReport, path: Path) -> None:
    """Bar charts of estimated cost and audio minutes per group, written as an image.

    ``Figure`` is used directly (no pyplot): no global state, no GUI backend, safe in a
    server process.
    """
    require_plotting()
    from matplotlib.figure import Figure

    labels = [row.group for row in report.rows]
    figure = Figure(figsize=(max(8.0, 0.8 * len(labels) + 3), 7.0), layout="constrained")
    cost_axes, minutes_axes = figure.subplots(2, 1, sharex=True)
    # An unknown figure draws no bar (not a zero-height one that reads as "free").
    costs = [math.nan if row.cost_usd is None else row.cost_usd for row in report.rows]
    cost_axes.bar(labels, costs, color="#4c72b0")
    cost_axes.set_ylabel("estimated cost (USD)")
    minutes = [math.nan if m is None else m for m in (row.audio_minutes for row in report.rows)]
    minutes_axes.bar(labels, minutes, color="#55a868")
    minutes_axes.set_ylabel("audio minutes")
    minutes_axes.set_xlabel(report.by.value + (" (UTC)" if report.by.value == "day" else ""))
    for label in minutes_axes.get_xticklabels():
        label.set(rotation=30, horizontalalignment="right")
    total = report.total
    minutes_text = "?" if total.audio_minutes is None else f"{total.audio_minutes:.1f}"
    cost_text = "unpriced" if total.cost_usd is None else f"${total.cost_usd:.4f}"
    summary = (
        f"{total.jobs} jobs, {minutes_text} audio min, {cost_text} estimated"
        + (f" ({total.unpriced} unpriced)" if total.unpriced else "")
        if report.rows
        else "no finished jobs"
    )
    figure.suptitle(
        f"stored {_when(report.since)} .. {_until(report.until)}\n{summary}", fontsize=10
    )
    figure.savefig(path)


# -- models ------------------------------------------------------------------------------------


def _price_text(price: Price) -> str:
    if price.token_priced:
        return (
            f"${price.audio_input_per_mtok:g} audio in, ${price.text_input_per_mtok:g} text in, "
            f"${price.output_per_mtok:g} out per M tokens"
        )
    return f"${price.per_minute:g} per audio minute"


def models_text(models: list[PricedModel]) -> str:
    """One line per model: id, family, price, where the price came from."""
    rows = [
        (m.id, m.family.value if m.family else "?", _price_text(m.price), m.source) for m in models
    ]
    heads = ("model", "family", "estimated price (USD)", "price from")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    lines = ["  ".join(f"{c:<{w}}" for c, w in zip(heads, widths, strict=True)).rstrip()]
    lines += ["  ".join(f"{c:<{w}}" for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append("")
    lines.append(
        "Any other well-formed model id is accepted too (the API decides); its cost is "
        "unpriced until STT_PRICES_FILE prices it."
    )
    return "\n".join(lines)


def models_json(models: list[PricedModel]) -> list[dict[str, Any]]:
    return [
        {
            "id": m.id,
            "family": m.family.value if m.family else None,
            "price": asdict(m.price),
            "source": m.source,
        }
        for m in models
    ]
