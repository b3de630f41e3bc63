"""What a finished job probably cost, in USD, from its usage and the price table.

An *estimate*: the catalog holds the upstream providers' list prices, while the AI/ML API
bills in its own credits. ``None`` means "cannot tell" (an unpriced model, or the usage
lacks the figure the model is priced by); it is never a silent zero, which would read as
"free" in every report.

Prices change more often than releases, so ``STT_PRICES_FILE`` names a TOML or JSON file
whose entries override the catalog's price of a model or price a model the catalog does
not list (docs/operations.md, "Prices")::

    [models."openai/gpt-4o-transcribe"]
    audio_input_per_mtok = 6.0
    text_input_per_mtok = 2.5
    output_per_mtok = 10.0

    [models."aai/universal-3"]      # not in the catalog: family from the prefix, or say so
    family = "assemblyai"
    per_minute = 0.0027

An entry replaces the model's whole price (fields it leaves out are 0). The file is read
once per process: restart workers after changing it (``stt-workers worker`` refuses to
start on a file it cannot read; ``stt-workers models`` shows what it would use).
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from tasks.catalog import MAX_MODEL_ID_CHARS, MODEL_ID, MODELS, Family, Price, guess_family
from tasks.errors import ConfigurationError
from tasks.models import Usage
from tasks.settings import get_settings

__all__ = ["CATALOG_SOURCE", "PricedModel", "estimate_cost", "load_prices", "price_table"]

_PER_MTOK = 1_000_000
_DIGITS = 6
_VARIABLE = "STT_PRICES_FILE"
CATALOG_SOURCE = "catalog"  # where a price came from when no file overrode it
_PRICE_FIELDS = frozenset(f.name for f in fields(Price))


@dataclass(frozen=True, slots=True)
class PricedModel:
    """A model we can price: its family (``None`` when unknown), price and its origin.

    ``source`` is ``"catalog"`` (tasks/catalog.py) or the absolute path of the prices file.
    """

    id: str
    family: Family | None
    price: Price
    source: str


def _token_cost(price: Price, usage: Usage) -> float | None:
    """Audio and text input at their own prices, output at the output price.

    Without the input breakdown all input is priced as audio: for a transcription model
    the input is the audio, bar a prompt of a few tokens.
    """
    if usage.output_tokens is None:
        return None
    if usage.audio_tokens is not None or usage.text_tokens is not None:
        input_cost = (usage.audio_tokens or 0) * price.audio_input_per_mtok + (
            usage.text_tokens or 0
        ) * price.text_input_per_mtok
    elif usage.input_tokens is not None:
        input_cost = usage.input_tokens * price.audio_input_per_mtok
    else:
        return None
    return (input_cost + usage.output_tokens * price.output_per_mtok) / _PER_MTOK


def _minute_cost(price: Price, usage: Usage) -> float | None:
    """Per audio minute, from the billed seconds when the provider says, else the audio's."""
    seconds = usage.billed_seconds if usage.billed_seconds is not None else usage.audio_seconds
    return None if seconds is None else seconds / 60.0 * price.per_minute


def estimate_cost(
    model: str, usage: Usage, *, prices: dict[str, PricedModel] | None = None
) -> float | None:
    """Estimated USD cost of one job, rounded to 6 decimals; ``None`` when unknowable.

    ``prices`` defaults to this process's table (the catalog plus ``STT_PRICES_FILE``).
    """
    table = price_table() if prices is None else prices
    entry = table.get(model)
    if entry is None:
        return None
    price = entry.price
    cost = _token_cost(price, usage) if price.token_priced else _minute_cost(price, usage)
    return None if cost is None else round(cost, _DIGITS)


def price_table(prices_file: str | None = None) -> dict[str, PricedModel]:
    """The catalog's prices with ``prices_file``'s (default: ``STT_PRICES_FILE``) over them.

    Raises ``ConfigurationError`` naming ``STT_PRICES_FILE`` if the file is unusable.
    """
    path = prices_file if prices_file is not None else get_settings().prices_file
    return _table(str(Path(path).resolve()) if path else None)


@lru_cache(maxsize=4)
def _table(path: str | None) -> dict[str, PricedModel]:
    table = {m.id: PricedModel(m.id, m.family, m.price, CATALOG_SOURCE) for m in MODELS.values()}
    if path is not None:
        table.update(load_prices(path))
    return table


def load_prices(path: str | Path) -> dict[str, PricedModel]:
    """Read a prices file (``.toml`` or ``.json``); ``ConfigurationError`` says what is wrong."""
    source = Path(path).resolve()
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise ConfigurationError(_VARIABLE, f"cannot read {source}: {exc.strerror}") from None
    try:
        if source.suffix == ".toml":
            data: Any = tomllib.loads(raw.decode("utf-8"))
        elif source.suffix == ".json":
            data = json.loads(raw)
        else:
            raise ConfigurationError(_VARIABLE, f"{source} must end in .toml or .json")
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise ConfigurationError(_VARIABLE, f"{source} is not valid: {exc}") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict) or set(data) != {"models"}:
        raise ConfigurationError(
            _VARIABLE, f'{source} must hold one table, "models", of model id -> price'
        )
    return {model_id: _entry(source, model_id, entry) for model_id, entry in models.items()}


def _entry(source: Path, model_id: str, entry: Any) -> PricedModel:
    def bad(why: str) -> ConfigurationError:
        return ConfigurationError(_VARIABLE, f"{source}: model {model_id!r}: {why}")

    if len(model_id) > MAX_MODEL_ID_CHARS or not MODEL_ID.match(model_id):
        raise bad("is not a model id like 'openai/gpt-4o-transcribe'")
    if not isinstance(entry, dict):
        raise bad("must be a table of prices")
    unknown = set(entry) - _PRICE_FIELDS - {"family"}
    if unknown:
        known = ", ".join(sorted(_PRICE_FIELDS))
        raise bad(f"unknown keys {sorted(unknown)}; known: family, {known}")
    values: dict[str, float] = {}
    for name in _PRICE_FIELDS & set(entry):
        value = entry[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise bad(f"{name} must be a finite number >= 0, got {value!r}")
        values[name] = float(value)
    if not values:
        raise bad(f"gives no price (one of {', '.join(sorted(_PRICE_FIELDS))})")
    family = guess_family(model_id)
    if "family" in entry:
        try:
            family = Family(entry["family"])
        except ValueError:
            raise bad(f"family must be one of {[f.value for f in Family]}") from None
    return PricedModel(model_id, family, Price(**values), str(source))
