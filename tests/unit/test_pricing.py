"""estimate_cost(): token-priced and per-minute models, and when it cannot tell."""

from __future__ import annotations

import pytest

from tasks.catalog import MODELS, Family
from tasks.models import Usage
from tasks.pricing import estimate_cost

# gpt-4o-mini-transcribe: $3 / M audio tokens, $1.25 / M text tokens, $5 / M output tokens.
MINI = "openai/gpt-4o-mini-transcribe"
DOC_USAGE = Usage(
    input_tokens=100, audio_tokens=100, text_tokens=0, output_tokens=37, total_tokens=137
)


def test_doc_example_cost() -> None:
    # 100 * 3 + 37 * 5 = 485 micro-dollars
    assert estimate_cost(MINI, DOC_USAGE) == 0.000485


def test_text_tokens_are_priced_as_text() -> None:
    usage = Usage(audio_tokens=1_000_000, text_tokens=1_000_000, output_tokens=1_000_000)
    assert estimate_cost(MINI, usage) == 3.0 + 1.25 + 5.0
    assert estimate_cost("openai/gpt-4o-transcribe", usage) == 6.0 + 2.5 + 10.0


def test_missing_details_price_all_input_as_audio() -> None:
    assert estimate_cost(MINI, Usage(input_tokens=200_000, output_tokens=0)) == 0.6


def test_partial_details_count_the_missing_part_as_zero() -> None:
    assert estimate_cost(MINI, Usage(input_tokens=999, audio_tokens=1000, output_tokens=0)) == 0.003


@pytest.mark.parametrize(
    "usage",
    [
        Usage(),
        Usage(input_tokens=100),  # no output figure
        Usage(output_tokens=37),  # no input figure
        Usage(billed_seconds=60.0),  # seconds do not price a token model
    ],
)
def test_token_model_without_the_figures_is_unknown(usage: Usage) -> None:
    assert estimate_cost(MINI, usage) is None


def test_per_minute_models_use_billed_seconds_first() -> None:
    # aai/universal: $0.0025 per minute
    assert estimate_cost("aai/universal", Usage(billed_seconds=120.0, audio_seconds=90.0)) == 0.005
    assert estimate_cost("aai/universal", Usage(audio_seconds=90.0)) == 0.00375
    # nova-2: $0.0043 per minute; 3.5 s -> 0.000250833...
    assert estimate_cost("#g1_nova-2-general", Usage(billed_seconds=3.5)) == 0.000251


def test_per_minute_model_without_seconds_is_unknown() -> None:
    assert estimate_cost("aai/best", Usage(input_tokens=10, output_tokens=10)) is None


def test_zero_seconds_cost_nothing() -> None:
    assert estimate_cost("aai/nano", Usage(billed_seconds=0.0)) == 0.0


def test_unknown_model_is_unknown() -> None:
    assert estimate_cost("acme/whisper-xxl", DOC_USAGE) is None


def test_every_catalog_model_gets_a_positive_price() -> None:
    for model in MODELS.values():
        usage = (
            DOC_USAGE
            if model.family is Family.OPENAI
            else Usage(billed_seconds=60.0, audio_seconds=60.0)
        )
        cost = estimate_cost(model.id, usage)
        assert cost is not None and cost > 0, model.id
