from __future__ import annotations

import pytest

from tasks.errors import ConfigurationError
from tasks.redact import redact_url
from tasks.settings import Settings


def test_defaults_run_locally() -> None:
    s = Settings.from_env({})
    assert s.api_base == "https://api.aimlapi.com"
    assert s.database_url.startswith("sqlite:///")
    assert s.api_key is None


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"STT_POLL_DEADLINE": "soon"}, "STT_POLL_DEADLINE"),
        ({"STT_READ_TIMEOUT": "-1"}, "STT_READ_TIMEOUT"),
        ({"AIML_API_BASE": "api.aimlapi.com"}, "AIML_API_BASE"),
        ({"STT_POLL_JITTER": "1.5"}, "STT_POLL_JITTER"),
        ({"STT_SUBMIT_MAX_RETRIES": "2.5"}, "STT_SUBMIT_MAX_RETRIES"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env)
    assert info.value.variable == variable
    assert variable in str(info.value)


def test_key_required_only_where_used_and_never_shown() -> None:
    with pytest.raises(ConfigurationError, match="AIML_API_KEY"):
        Settings.from_env({}).require_api_key()
    s = Settings.from_env({"AIML_API_KEY": "sk-very-secret"})
    assert s.require_api_key() == "sk-very-secret"
    assert "sk-very-secret" not in repr(s)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://b.s3.amazonaws.com/a.mp3?X-Amz-Signature=s3cr3t&X-Amz-Credential=c",
            "https://b.s3.amazonaws.com/a.mp3?<redacted>",
        ),
        ("https://user:pw@host.example:8443/x.wav#frag", "https://host.example:8443/x.wav"),
        ("https://host.example/plain.wav", "https://host.example/plain.wav"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
