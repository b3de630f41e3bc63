"""The poll message carries the forecast (issue 15); old and malformed messages mean none."""

from __future__ import annotations

import pytest

from tasks.polling import Forecast
from tasks.steps import PollRef, parse_message


def test_a_forecast_survives_the_message() -> None:
    ref = PollRef("job", "gen", 1800.0, forecast=(3.0, 4.0, 6.0))
    message = ref.to_message()
    assert message["forecast"] == [3.0, 4.0, 6.0]
    again = parse_message(message)
    assert again == ref and isinstance(again, PollRef)
    assert again.planned() == Forecast(3.0, 4.0, 6.0)


def test_without_a_forecast_the_message_is_as_before() -> None:
    message = PollRef("job", "gen", 1800.0).to_message()
    assert "forecast" not in message
    ref = parse_message(message)
    assert isinstance(ref, PollRef) and ref.planned() is None


@pytest.mark.parametrize("bad", [None, [], [1, 2], "abc", [1, "x", 3], [5.0, 4.0, 3.0], {"a": 1}])
def test_a_malformed_forecast_means_todays_schedule(bad: object) -> None:
    message = {**PollRef("job", "gen", 1800.0).to_message(), "forecast": bad}
    ref = parse_message(message)
    assert isinstance(ref, PollRef) and ref.planned() is None
