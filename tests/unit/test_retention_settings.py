"""STT_RETENTION_DAYS / STT_RETENTION_KEEP_TEXT and the beat entry they turn on."""

from __future__ import annotations

import pytest

from tasks.celeryconfig import PRUNE_EVERY, beat_schedule, celery_config
from tasks.errors import ConfigurationError
from tasks.settings import Settings


def test_retention_is_off_by_default() -> None:
    settings = Settings.from_env({})
    assert settings.retention_days == 0 and settings.retention_keep_text is False
    assert "stt-prune" not in celery_config(settings)["beat_schedule"]


@pytest.mark.parametrize(("raw", "keep"), [("true", True), ("1", True), ("No", False)])
def test_retention_days_schedule_the_prune(raw: str, keep: bool) -> None:
    settings = Settings.from_env({"STT_RETENTION_DAYS": "30", "STT_RETENTION_KEEP_TEXT": raw})
    entry = beat_schedule(settings)["stt-prune"]
    assert entry["task"] == "stt.prune" and entry["schedule"] == PRUNE_EVERY
    assert entry["kwargs"] == {"days": 30.0, "keep_text": keep}


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("STT_RETENTION_DAYS", "-1", "must not be negative"),
        ("STT_RETENTION_DAYS", "a month", "must be a float"),
        ("STT_RETENTION_KEEP_TEXT", "maybe", "must be true or false"),
    ],
)
def test_bad_values_name_the_variable(name: str, raw: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        Settings.from_env({name: raw})
    assert name in str(caught.value)
