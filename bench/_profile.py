"""A py-spy profile (collapsed stacks) of one worker, as milliseconds of CPU per poll by part.

``py-spy record --gil --format raw`` writes one line per distinct stack (root first,
frames ``function (file:line)`` joined by ``;``) and its sample count. Each stack is given
to the part of a poll its frames show: cross-cutting parts (logging, metrics, the HTTP
deadline watchdog) wherever they appear, else the deepest structural frame (the HTTP GET
inside the poll, the row write, the re-publish...). Samples become milliseconds with the
sampling rate, divided by the polls made while sampling.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

__all__ = ["PARTS", "part_of", "parts_table", "profile_parts"]

# (part, markers): a stack belongs to the first cross-cutting part one of whose markers a
# frame contains; failing that, to the structural part matched by its deepest frame.
CROSS_CUTTING: list[tuple[str, tuple[str, ...]]] = [
    ("logging", ("logging/__init__.py",)),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("HTTP deadline watchdog", ("tasks/deadline.py",)),
]
STRUCTURAL: list[tuple[str, tuple[str, ...]]] = [
    ("consumer: receive, decode, ETA timer", ("Consumer.start", "Hub.create_loop")),
    ("worker thread: accept, ack, results", ("_worker (concurrent/futures/thread.py",)),
    ("Celery trace around the task", ("fast_trace_task",)),
    ("poll task: the rest", ("poll (tasks/pipeline.py", "_retry_once", "retry_floor")),
    ("settings, policy, message parse", ("get_settings", "from_settings", "parse_message")),
    ("in-flight cap", ("tasks/inflight.py",)),
    ("HTTP GET (requests)", ("STTClient.get",)),
    ("answer parse (JSON, envelope)", ("parse_generation", "Response.json")),
    ("row write (SQLAlchemy, psycopg)", ("tasks/store.py",)),
    ("re-publish (kombu, Redis)", ("reschedule (tasks/reschedule.py", "Task.retry")),
    ("Retry exception, traceback", ("einfo.py", "traceback.py", "Retry.__init__")),
]
PARTS = [p for p, _ in STRUCTURAL + CROSS_CUTTING] + ["other"]


def part_of(frames: list[str]) -> str:
    for part, markers in CROSS_CUTTING:
        if any(m in f for f in frames for m in markers):
            return part
    found = "other"
    for frame in frames:
        for part, markers in STRUCTURAL:
            if any(m in frame for m in markers):
                found = part
    return found


def profile_parts(path: Path, rate: int, polls: int) -> dict[str, float]:
    """Milliseconds of sampled (GIL-holding) CPU per poll, by part."""
    samples: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            samples[part_of(stack.split(";"))] += int(count)
    return {part: 1000 * n / rate / max(1, polls) for part, n in samples.items()}


def parts_table(profiles: Mapping[str, tuple[Path, int]], rate: int) -> str:
    """A markdown table: one row per part, one column per profile (``label: (path, polls)``)."""
    columns = {label: profile_parts(path, rate, polls) for label, (path, polls) in profiles.items()}
    labels = list(columns)
    lines = ["| part | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for part in PARTS:
        if any(columns[label].get(part) for label in labels):
            cells = [f"{columns[label].get(part, 0.0):.3f}" for label in labels]
            lines.append(f"| {part} | " + " | ".join(cells) + " |")
    totals = [f"**{sum(columns[label].values()):.3f}**" for label in labels]
    lines.append("| total sampled | " + " | ".join(totals) + " |")
    return "\n".join(lines)
