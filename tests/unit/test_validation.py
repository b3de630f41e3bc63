"""Bad input is rejected with the field's name, before anything is stored or enqueued."""

from __future__ import annotations

import pytest

from tasks.errors import InvalidInput
from tasks.validation import MAX_METADATA_BYTES, MAX_PROMPT_CHARS, validate_request

GOOD_URL = "https://audio.example.com/a.mp3"
GOOD_MODEL = "openai/gpt-4o-mini-transcribe"

BAD = [
    ({"url": ""}, "url", "must not be empty"),
    ({"url": "   "}, "url", "must not be empty"),
    ({"url": "not a url"}, "url", "http(s)"),
    ({"url": "file:///etc/passwd"}, "url", "'file://'"),
    ({"url": "ftp://host/a.mp3"}, "url", "'ftp://'"),
    ({"url": "https://"}, "url", "no host"),
    ({"url": 42}, "url", "got int"),
    ({"url": None}, "url", "got NoneType"),
    ({"url": "https://a.example/" + "x" * 5000}, "url", "longer than"),
    ({"model": "openai/whisper 9"}, "model", "is not a model id"),
    ({"model": ""}, "model", "is not a model id"),
    ({"model": "openai//whisper"}, "model", "is not a model id"),
    ({"model": "/whisper"}, "model", "is not a model id"),
    ({"model": "https://evil.example/x"}, "model", "is not a model id"),
    ({"model": "a" * 129}, "model", "is not a model id"),
    ({"model": None}, "model", "must be a string"),
    ({"temperature": -1}, "temperature", "between 0 and 1"),
    ({"temperature": 2}, "temperature", "between 0 and 1"),
    ({"temperature": "abc"}, "temperature", "must be a number"),
    ({"temperature": float("nan")}, "temperature", "between 0 and 1"),
    ({"temperature": True}, "temperature", "must be a number"),
    ({"language": "english please"}, "language", "BCP-47"),
    ({"language": 5}, "language", "must be a string"),
    ({"prompt": "p" * (MAX_PROMPT_CHARS + 1)}, "prompt", "longer than"),
    ({"prompt": ["a"]}, "prompt", "must be a string"),
    ({"metadata": "x"}, "metadata", "JSON object"),
    ({"metadata": {1: "a"}}, "metadata", "keys must be strings"),
    ({"metadata": {"a": object()}}, "metadata", "JSON-serializable"),
    ({"metadata": {"a": "x" * MAX_METADATA_BYTES}}, "metadata", "larger than"),
    ({"callback_url": "javascript:alert(1)"}, "callback_url", "http(s)"),
    ({"idempotency_key": 12}, "idempotency_key", "must be a string"),
]


@pytest.mark.parametrize(("override", "field", "fragment"), BAD)
def test_bad_input_names_the_field(override: dict[str, object], field: str, fragment: str) -> None:
    kwargs: dict[str, object] = {"url": GOOD_URL, "model": GOOD_MODEL, **override}
    url, model = kwargs.pop("url"), kwargs.pop("model")
    with pytest.raises(InvalidInput) as info:
        validate_request(url, model, **kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "model",
    [
        "openai/gpt-4o-mini-transcribe",
        "#g1_nova-3-general",
        "aai/slam-1",
        # Not in tasks.catalog: the vendor may add them tomorrow; the API decides.
        "openai/gpt-5-transcribe",
        "#g1_nova-4-general",
        "aai/universal-3",
        "elevenlabs/scribe_v1",
        "whisper-1",
    ],
)
def test_any_well_formed_model_id_is_accepted(model: str) -> None:
    assert validate_request(GOOD_URL, model).model == model


def test_good_input_is_normalized() -> None:
    req = validate_request(
        "  https://audio.example.com/a.mp3?sig=1  ",
        "#g1_nova-2-general",
        language="pt-BR",
        temperature=1,
        metadata={"n": 1},
    )
    assert req.url == "https://audio.example.com/a.mp3?sig=1"
    assert req.temperature == 1.0 and isinstance(req.temperature, float)
    assert req.metadata == {"n": 1}
    assert req.prompt is None and req.idempotency_key is None
