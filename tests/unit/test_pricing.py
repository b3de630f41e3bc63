"""estimate_cost(): token-priced and per-minute models, and when it cannot tell."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.catalog import MODELS, Family, Price
from tasks.errors import ConfigurationError
from tasks.models import Usage
from tasks.pricing import CATALOG_SOURCE, estimate_cost, load_prices, price_table

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


# -- STT_PRICES_FILE ---------------------------------------------------------------------------

PRICES_TOML = """
[models."openai/gpt-4o-mini-transcribe"]   # the vendor halved it
audio_input_per_mtok = 1.5
text_input_per_mtok = 0.625
output_per_mtok = 2.5

[models."aai/universal-3"]                 # not in the catalog: family from the prefix
per_minute = 0.003

[models."acme/listen-1"]                   # no known prefix: family given
family = "deepgram"
per_minute = 0.01
"""


def test_a_toml_prices_file_overrides_and_adds(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(PRICES_TOML)
    table = price_table(str(path))
    assert estimate_cost(MINI, DOC_USAGE, prices=table) == round(485 / 2 / 1e6, 6)
    assert estimate_cost("aai/universal-3", Usage(billed_seconds=120.0), prices=table) == 0.006
    assert estimate_cost("acme/listen-1", Usage(audio_seconds=60.0), prices=table) == 0.01
    # Untouched catalog entries keep the catalog's price, and say where it came from.
    assert table["aai/universal"].source == CATALOG_SOURCE
    assert table[MINI].source == str(path.resolve())
    assert table["aai/universal-3"].family is Family.ASSEMBLYAI
    assert table["acme/listen-1"].family is Family.DEEPGRAM
    assert estimate_cost("acme/other", Usage(audio_seconds=60.0), prices=table) is None


def test_a_json_prices_file_reads_the_same(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"models": {"aai/universal-3": {"per_minute": 0.003}}}))
    table = load_prices(path)
    assert table["aai/universal-3"].price == Price(per_minute=0.003)


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("p.toml", "[models.'aai/x']\nper_minut = 1", "unknown keys ['per_minut']"),
        ("p.toml", "[models.'aai/x']\nper_minute = -1", "finite number >= 0"),
        ("p.toml", "[models.'aai/x']\nper_minute = 'cheap'", "must be a number"),
        ("p.toml", "[models.'aai/x']\nfamily = 'assemblyai'", "gives no price"),
        ("p.toml", "[models.'aai x']\nper_minute = 1", "is not a model id"),
        ("p.toml", "[models.'aai/x']\nfamily = 'acme'\nper_minute = 1", "family must be one of"),
        ("p.toml", "[prices]\n'aai/x' = 1", 'one table, "models"'),
        ("p.toml", "models = [", "is not valid"),
        ("p.json", "{", "is not valid"),
        ("p.yaml", "models: {}", "must end in .toml or .json"),
    ],
)
def test_a_bad_prices_file_names_the_variable_and_the_problem(
    tmp_path: Path, name: str, text: str, fragment: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigurationError) as info:
        load_prices(path)
    assert info.value.variable == "STT_PRICES_FILE"
    assert fragment in str(info.value) and str(path.resolve()) in str(info.value)


def test_a_missing_prices_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="STT_PRICES_FILE: cannot read"):
        price_table(str(tmp_path / "nope.toml"))
