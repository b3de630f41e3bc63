"""The poll schedule and submit backoff: bounds, monotonicity, jitter, Retry-After, deadline."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.polling import (
    DEFAULT_POLICY,
    RETRY_AFTER_CAP,
    SUBMIT_MAX_DELAY,
    SUBMIT_MAX_RETRIES,
    PollPolicy,
    deadline_passed,
    expected_polls,
    next_poll_delay,
    submit_retry_delay,
)
from tasks.settings import Settings

attempts = st.integers(min_value=0, max_value=10_000)
unit = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
policies = st.builds(
    PollPolicy,
    first_delay=st.floats(min_value=0.01, max_value=10.0),
    factor=st.floats(min_value=1.0, max_value=4.0),
    max_delay=st.floats(min_value=10.0, max_value=120.0),
    jitter=st.floats(min_value=0.0, max_value=0.9),
    deadline=st.floats(min_value=1.0, max_value=7200.0),
)


def middle() -> float:
    return 0.5  # jitter factor exactly 1


def test_defaults_match_settings() -> None:
    # Settings carries the same defaults so they can come from the environment.
    assert PollPolicy.from_settings(Settings()) == DEFAULT_POLICY
    assert Settings().submit_max_retries == SUBMIT_MAX_RETRIES


def test_from_settings_reads_every_knob() -> None:
    settings = Settings(
        poll_first_delay=1.0,
        poll_factor=2.0,
        poll_max_delay=8.0,
        poll_jitter=0.1,
        poll_deadline=60.0,
    )
    assert PollPolicy.from_settings(settings) == PollPolicy(1.0, 2.0, 8.0, 0.1, 60.0)


def test_default_schedule_without_jitter() -> None:
    delays = [next_poll_delay(k, rand=middle) for k in range(8)]
    assert delays == pytest.approx([8.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0])


def test_jitter_extremes() -> None:
    assert next_poll_delay(0, rand=lambda: 0.0) == pytest.approx(6.0)  # 8 * 0.75
    assert next_poll_delay(0, rand=lambda: 0.999999) == pytest.approx(10.0, abs=1e-5)  # capped
    # At the cap the jitter can only shorten: the cap is a hard bound.
    assert next_poll_delay(50, rand=lambda: 0.999999) == 10.0
    assert next_poll_delay(50, rand=lambda: 0.0) == pytest.approx(7.5)


@given(attempt=attempts, r=unit, policy=policies)
def test_cap_is_a_hard_bound_including_jitter(attempt: int, r: float, policy: PollPolicy) -> None:
    delay = next_poll_delay(attempt, policy=policy, rand=lambda: r)
    assert 0 < delay <= policy.max_delay


@given(attempt=attempts, r=unit, policy=policies)
def test_jitter_stays_in_range(attempt: int, r: float, policy: PollPolicy) -> None:
    base = policy.base_delay(attempt)
    delay = next_poll_delay(attempt, policy=policy, rand=lambda: r)
    assert base * (1 - policy.jitter) - 1e-9 <= delay <= base * (1 + policy.jitter) + 1e-9


@given(attempt=st.integers(min_value=0, max_value=200), policy=policies)
def test_schedule_is_monotone_up_to_the_cap(attempt: int, policy: PollPolicy) -> None:
    now = next_poll_delay(attempt, policy=policy, rand=middle)
    after = next_poll_delay(attempt + 1, policy=policy, rand=middle)
    assert after >= now
    if now < policy.max_delay:
        assert after == pytest.approx(min(now * policy.factor, policy.max_delay))


@given(attempt=attempts, r=unit, retry_after=st.floats(min_value=0.0, max_value=1e6))
def test_retry_after_is_honoured_up_to_the_cap(attempt: int, r: float, retry_after: float) -> None:
    delay = next_poll_delay(attempt, retry_after=retry_after, rand=lambda: r)
    assert delay >= min(retry_after, RETRY_AFTER_CAP)
    assert delay <= max(DEFAULT_POLICY.max_delay, RETRY_AFTER_CAP)


def test_retry_after_examples() -> None:
    assert next_poll_delay(0, retry_after=42.0, rand=middle) == 42.0
    assert next_poll_delay(0, retry_after=0.5, rand=middle) == 8.0  # never earlier
    assert next_poll_delay(0, retry_after=86_400.0, rand=middle) == RETRY_AFTER_CAP
    assert next_poll_delay(0, retry_after=-5.0, rand=middle) == 8.0
    assert next_poll_delay(0, retry_after=float("nan"), rand=middle) == 8.0


def test_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt"):
        next_poll_delay(-1)
    with pytest.raises(ValueError, match="attempt"):
        submit_retry_delay(-1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"first_delay": 0.0},
        {"first_delay": 20.0, "max_delay": 15.0},
        {"factor": 0.5},
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"deadline": 0.0},
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PollPolicy(**kwargs)


def test_deadline() -> None:
    policy = PollPolicy(deadline=60.0)
    assert not deadline_passed(1000.0, 1059.9, policy)
    assert deadline_passed(1000.0, 1060.0, policy)
    assert deadline_passed(1000.0, 5000.0, policy)
    assert not deadline_passed(0.0, 1799.0)


# --- submit retries ----------------------------------------------------------------------


def test_submit_ceilings_double_up_to_the_cap() -> None:
    top = [submit_retry_delay(k, rand=lambda: 0.999999) for k in range(9)]
    assert top == pytest.approx([1, 2, 4, 8, 16, 32, 60, 60, 60], rel=1e-5)
    assert submit_retry_delay(3, rand=lambda: 0.0) == 0.0  # full jitter reaches zero


@given(attempt=attempts, r=unit)
def test_submit_delay_is_bounded(attempt: int, r: float) -> None:
    assert 0.0 <= submit_retry_delay(attempt, rand=lambda: r) <= SUBMIT_MAX_DELAY


def test_submit_honours_retry_after() -> None:
    assert submit_retry_delay(0, retry_after=30.0, rand=lambda: 0.5) == 30.0
    assert submit_retry_delay(0, 1e9, rand=lambda: 0.5) == RETRY_AFTER_CAP


# --- expected polls ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "polls"),
    [
        (0.0, 1),  # done at submit: the first poll, 8 s later, sees it
        (1.0, 1),
        (8.0, 1),
        (8.1, 2),  # 8, 16
        (16.0, 2),
        (17.0, 3),  # 8, 16, 26 (x1.5 = 12, capped at 10)
        (60.0, 7),  # 8, 16, 26, 36, 46, 56, 66
    ],
)
def test_expected_polls_small_durations(duration: float, polls: int) -> None:
    assert expected_polls(duration) == polls


def test_expected_polls_long_jobs_poll_every_max_delay() -> None:
    # After the ramp (8 s, then the 10 s cap) one poll per 10 s.
    assert expected_polls(600.0) - expected_polls(300.0) == 30


def test_expected_polls_stop_at_the_deadline() -> None:
    policy = PollPolicy(deadline=60.0)
    # Polls at 8, 16, 26, 36, 46, 56; the one due at 66 is not made.
    assert expected_polls(3600.0, policy) == 6
    assert expected_polls(1e9, policy) == 6


@given(a=st.floats(min_value=0, max_value=4000), b=st.floats(min_value=0, max_value=4000))
def test_expected_polls_grows_with_duration(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert 1 <= expected_polls(low) <= expected_polls(high)
