"""Settings of the shared limits: defaults, which Redis, and errors naming the variable."""

from __future__ import annotations

import pytest

from tasks.errors import ConfigurationError
from tasks.settings import Settings


def test_limits_are_off_by_default_and_use_the_broker_redis() -> None:
    settings = Settings.from_env({})
    assert settings.api_rate_limit == 0 and settings.max_in_flight == 0
    assert settings.limiter_redis_url == settings.broker_url


def test_limits_read_from_env_with_their_own_redis() -> None:
    settings = Settings.from_env(
        {
            "STT_API_RATE_LIMIT": "2.5",
            "STT_MAX_IN_FLIGHT": "20",
            "STT_BROKER_URL": "amqp://guest@localhost//",
            "STT_RATE_LIMIT_REDIS_URL": "redis://limits:6379/3",
        }
    )
    assert (settings.api_rate_limit, settings.max_in_flight) == (2.5, 20)
    assert settings.limiter_redis_url == "redis://limits:6379/3"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"STT_API_RATE_LIMIT": "-1"}, "STT_API_RATE_LIMIT"),
        ({"STT_MAX_IN_FLIGHT": "many"}, "STT_MAX_IN_FLIGHT"),
        ({"STT_RATE_LIMIT_REDIS_URL": "http://x"}, "STT_RATE_LIMIT_REDIS_URL"),
        (
            {"STT_MAX_IN_FLIGHT": "5", "STT_BROKER_URL": "amqp://guest@localhost//"},
            "STT_RATE_LIMIT_REDIS_URL",
        ),
    ],
)
def test_bad_limit_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(env)
    assert caught.value.variable == variable


def test_limits_off_need_no_redis_with_another_broker() -> None:
    settings = Settings.from_env({"STT_BROKER_URL": "amqp://guest@localhost//"})
    assert settings.limiter_redis_url is None
