"""The knobs the fault tests turn: the visibility timeout, and poll counts across re-drives."""

from __future__ import annotations

import pytest

from tasks.celeryconfig import VISIBILITY_TIMEOUT, celery_config, redis_transport_options
from tasks.errors import ConfigurationError
from tasks.settings import Settings
from tasks.steps import PollRef, parse_message


def test_visibility_timeout_from_env_reaches_the_broker_options() -> None:
    settings = Settings.from_env(
        {"STT_VISIBILITY_TIMEOUT": "15", "STT_POLL_FIRST_DELAY": "0.2", "STT_POLL_MAX_DELAY": "1"}
    )
    options = celery_config(settings)["broker_transport_options"]
    assert options["visibility_timeout"] == 15.0
    # Scanned for expired messages every 2 s, not kombu's default 100 s.
    assert options["unacked_restore_interval"] * options["unacked_restore_throttle"] == 2


def test_default_visibility_timeout_is_scanned_about_ten_times_per_timeout() -> None:
    assert Settings().visibility_timeout == VISIBILITY_TIMEOUT == 900
    options = redis_transport_options(900)
    assert options["unacked_restore_interval"] * options["unacked_restore_throttle"] == 90


@pytest.mark.parametrize("value", [f"{Settings().poll_max_delay:g}", "3"])
def test_visibility_timeout_must_exceed_the_longest_poll_countdown(value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({"STT_VISIBILITY_TIMEOUT": value})  # at or below the default cap
    assert info.value.variable == "STT_VISIBILITY_TIMEOUT"
    assert "STT_POLL_MAX_DELAY" in str(info.value)


def test_poll_ref_carries_its_poll_count_and_reads_old_messages() -> None:
    ref = PollRef("job", "gen", 123.0, polls=7)
    assert parse_message(ref.to_message()) == ref
    old = {"job_id": "job", "generation_id": "gen", "deadline": 123.0}  # before the field
    assert parse_message(old) == PollRef("job", "gen", 123.0, polls=0)
