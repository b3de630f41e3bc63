"""STT_PROBE_AUDIO and STT_SPEED_FIT_INTERVAL, and the beat entry the latter turns on."""

from __future__ import annotations

import pytest

from tasks.celeryconfig import beat_schedule
from tasks.errors import ConfigurationError
from tasks.settings import Settings


def test_the_probe_and_the_refit_are_on_by_default() -> None:
    settings = Settings.from_env({})
    assert settings.probe_audio is True and settings.speed_fit_interval == 600
    entry = beat_schedule(settings)["stt-fit-speed"]
    assert entry["task"] == "stt.fit_speed" and entry["schedule"] == 600


def test_zero_turns_them_off() -> None:
    settings = Settings.from_env({"STT_PROBE_AUDIO": "0", "STT_SPEED_FIT_INTERVAL": "0"})
    assert settings.probe_audio is False
    assert "stt-fit-speed" not in beat_schedule(settings)


@pytest.mark.parametrize(
    ("name", "raw", "words"),
    [
        ("STT_PROBE_AUDIO", "maybe", "must be true or false"),
        ("STT_SPEED_FIT_INTERVAL", "-1", "must not be negative"),
        ("STT_SPEED_FIT_INTERVAL", "often", "must be a float"),
    ],
)
def test_bad_values_name_the_variable(name: str, raw: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({name: raw})
    assert name in str(info.value) and words in str(info.value)
