"""The pure parts of the reports: percentiles, summaries, --since/--until parsing, formatting."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.reports import parse_time_bound, percentile, summarize
from workers.report_render import _seconds

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

values = st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=2, max_size=200)


@given(values)
def test_percentiles_match_the_inclusive_definition_of_the_standard_library(
    data: list[float],
) -> None:
    # statistics.quantiles(method="inclusive") is the percentile_cont / NumPy definition.
    cuts = statistics.quantiles(data, n=100, method="inclusive")
    ordered = sorted(data)
    for q in (50, 90, 99):
        assert percentile(ordered, q / 100) == pytest.approx(cuts[q - 1], rel=1e-9, abs=1e-6)
    assert percentile(ordered, 0) == ordered[0]
    assert percentile(ordered, 1) == ordered[-1]


@given(values)
def test_summary_is_ordered_and_bounded(data: list[float]) -> None:
    s = summarize(data)
    assert s.count == len(data)
    assert min(data) <= s.p50 <= s.p90 <= s.p99 <= s.max == max(data)  # type: ignore[operator]
    assert min(data) - 1e-6 <= s.mean <= max(data) + 1e-6  # type: ignore[operator]


def test_known_summary_and_edge_cases() -> None:
    s = summarize([float(v) for v in range(10, 111, 10)])  # 10, 20, ..., 110
    assert (s.count, s.mean, s.p50, s.max) == (11, 60.0, 60.0, 110.0)
    assert s.p90 == pytest.approx(100.0) and s.p99 == pytest.approx(109.0)
    assert summarize([7.0]).p99 == 7.0
    empty = summarize([])
    assert empty.count == 0 and empty.p50 is None and empty.max is None
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        percentile([1.0], 1.5)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1h", NOW - timedelta(hours=1)),
        ("24h", NOW - timedelta(hours=24)),
        ("30m", NOW - timedelta(minutes=30)),
        ("90s", NOW - timedelta(seconds=90)),
        ("7d", NOW - timedelta(days=7)),
        ("2w", NOW - timedelta(weeks=2)),
        ("1.5H", NOW - timedelta(minutes=90)),
        ("2026-11-20", datetime(2026, 11, 20, tzinfo=UTC)),
        ("2026-11-20T08:30", datetime(2026, 11, 20, 8, 30, tzinfo=UTC)),
        ("2026-11-20T08:30Z", datetime(2026, 11, 20, 8, 30, tzinfo=UTC)),
        ("2026-11-20T10:30+02:00", datetime(2026, 11, 20, 8, 30, tzinfo=UTC)),
    ],
)
def test_time_bounds(raw: str, expected: datetime) -> None:
    got = parse_time_bound(raw, now=NOW)
    assert got == expected
    assert got.utcoffset() == timedelta(0)


def test_offsets_are_converted_to_utc() -> None:
    got = parse_time_bound("2026-11-20T00:30:00-05:00", now=NOW)
    assert got.utcoffset() == timedelta(0)
    assert (got.day, got.hour) == (20, 5)


@pytest.mark.parametrize("raw", ["", "yesterday", "1y", "-1h", "h", "2026-13-01", "1 hour"])
def test_bad_time_bounds_say_what_is_accepted(raw: str) -> None:
    with pytest.raises(ValueError, match="expected a duration like 30m, 1h, 7d"):
        parse_time_bound(raw, now=NOW)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "-"), (0.4123, "0.412s"), (42.04, "42.0s"), (185, "3m05s"), (7620, "2h07m")],
)
def test_durations_read_well_at_every_scale(seconds: float | None, shown: str) -> None:
    assert _seconds(seconds) == shown
