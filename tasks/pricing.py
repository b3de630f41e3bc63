"""What a finished job probably cost, in USD, from its usage and the catalog's prices.

An *estimate*: the catalog holds the upstream providers' list prices, while the AI/ML API
bills in its own credits. ``None`` means "cannot tell" (unknown model, or the usage lacks
the figure the model is priced by); it is never a silent zero.
"""

from __future__ import annotations

from tasks.catalog import Price, get_model
from tasks.models import Usage

__all__ = ["estimate_cost"]

_PER_MTOK = 1_000_000
_DIGITS = 6


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


def estimate_cost(model: str, usage: Usage) -> float | None:
    """Estimated USD cost of one job, rounded to 6 decimals; ``None`` when unknowable."""
    info = get_model(model)
    if info is None:
        return None
    price = info.price
    token_priced = max(price.audio_input_per_mtok, price.text_input_per_mtok) > 0
    cost = _token_cost(price, usage) if token_priced else _minute_cost(price, usage)
    return None if cost is None else round(cost, _DIGITS)
