"""Property: whatever the API answers a poll, every job ends, once (issue 12, acceptance).

Hypothesis writes the answers (any JSON, any status word, numbers of any size, NaN and
Infinity, deep nesting, control characters, NUL and lone surrogates, HTTP statuses of
every class) and the emulator serves each one verbatim to one job's polls
(``force-scripted-<name>``), through a real worker into SQLite and PostgreSQL. For every
job: a final state within its deadline, no more polls than its schedule allows, at most
one create at the API, no traceback in the worker's log.

Bounded: ``derandomize`` (the same examples every run, so CI never meets a new one by
chance), ``EXAMPLES`` batches of ``BATCH`` jobs, each batch over in about the deadline.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.jobs import transcribe
from tests.fixtures.stack import Stack
from tests.integration.test_pipeline import wait_all

DEADLINE = 3.0  # STT_POLL_DEADLINE: an answer that never ends a job times out by then
EXAMPLES = 6
BATCH = 5
# With a 0.2 s first delay, x1.5 and a 1 s cap (tests' stack_env), 3 s hold < 10 polls;
# a Retry-After of a 5xx only makes them fewer. Anything above is a retry without bound.
MAX_POLLS = 12
# Status words of any length (case 4): the row keeps 64 printable characters of them.
MAX_STATUS_CHARS = 500
MODEL = "openai/gpt-4o-mini-transcribe"


class Raw(str):
    """JSON text spliced in verbatim: a number JSON allows but Python would not write."""


RAW_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-999", "-0", str(10**20)]
CONTROL = st.characters(codec="utf-8", categories=["Cc", "Cs", "Zl", "Zp"]) | st.characters()


def dump(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


text = st.text(alphabet=CONTROL, max_size=12) | st.just("\x00") | st.just("\x1b[2J")
numbers = (
    st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(RAW_NUMBERS).map(Raw)
)
leaves = st.none() | st.booleans() | numbers | text | st.just(Raw('"\\ud800"'))
any_json = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=16,
)
deep = st.integers(min_value=60, max_value=100_000).map(lambda n: Raw("[" * n + "]" * n))
usage = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys(
        ("input_tokens", "output_tokens", "total_tokens", "seconds", "type"), numbers | text
    ),
)
openai_result = st.fixed_dictionaries(
    {"text": text},
    optional={"usage": usage, "duration": numbers, "words": st.lists(any_json, max_size=3)},
)
assemblyai_result = st.fixed_dictionaries(
    {"id": text, "status": text | st.just("completed")},
    optional={"text": text, "audio_duration": numbers, "words": st.lists(any_json, max_size=3)},
)
result = openai_result | assemblyai_result | any_json | deep
status = st.sampled_from(["completed", "error", "failed", "queued", "processing"]) | st.text(
    alphabet=CONTROL, max_size=MAX_STATUS_CHARS
)
legacy = st.fixed_dictionaries(
    {"generation_id": st.just("g-1") | text, "status": status},
    optional={"result": result, "error": any_json},
)
newer = st.fixed_dictionaries(
    {"id": st.just("g-1"), "status": status}, optional={"output": result, "error": any_json}
)
answer = st.tuples(
    st.sampled_from([201, 201, 201, 200, 400, 404, 500, 503]),
    (legacy | newer | any_json | deep).map(dump),
)


def test_any_answer_ends_every_job_once_within_its_deadline(
    make_stack: Callable[..., Stack], db: str
) -> None:
    stack = make_stack(db=db, STT_POLL_DEADLINE=str(DEADLINE))
    emulator = stack.emulator

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(answer, min_size=BATCH, max_size=BATCH))
    def batch(answers: list[tuple[int, str]]) -> None:
        jobs: dict[str, str] = {}  # job id -> its audio URL
        for status_code, body in answers:
            name = uuid.uuid4().hex
            emulator.script_answer(name, body, status=status_code)
            url = f"https://media.example.org/force-scripted-{name}/a.mp3"
            jobs[transcribe(url, MODEL).id] = url
        records = wait_all(stack, list(jobs), timeout=DEADLINE + 60)
        creates = emulator.create_counts()
        for record, (status_code, body) in zip(records, answers, strict=True):
            why = f"{status_code} {body[:300]!r} -> {record.status.value}: {record.error}"
            assert record.done, why
            assert creates.get(jobs[record.id], 0) <= 1, why
            polls = emulator.requests_log(f"/v1/stt/{record.generation_id}")
            assert 1 <= len(polls) <= MAX_POLLS, f"{len(polls)} polls: {why}"
            if record.status.value == "timeout":
                assert "deadline" in (record.error or ""), why
        log = stack.workers[0].log()
        assert "Traceback" not in log, log[-4000:]

    batch()
