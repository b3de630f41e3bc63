"""The speech-to-text models we know of: id, result family and list price.

Knowing a model is not a condition for using it: ``transcribe()`` accepts any well-formed
id (``MODEL_ID``) and lets the API's answer decide, because the vendor adds models without
asking us. What the table buys is a family hint for ``tasks.normalize`` (the shape is still
read from the data) and a price for ``tasks.pricing``; ``STT_PRICES_FILE`` overrides or adds
prices without a release (see tasks/pricing.py). The emulator keeps its own list, written
from the vendor's documentation (workers/emulator/models.py): the two agree by test.

Prices are *estimates* in USD from the upstream providers' public list prices (the AI/ML API
bills in its own credits, close to these). Token-priced models (OpenAI) are charged per
million tokens; the others per minute of audio.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "MODELS",
    "MODEL_ID",
    "Family",
    "ModelInfo",
    "Price",
    "family_of",
    "get_model",
    "guess_family",
]

# What a vendor model id looks like: "openai/gpt-4o-transcribe", "#g1_nova-2-general",
# "aai/slam-1". Letters, digits and ``._:+-`` in path segments joined by single slashes,
# an optional leading "#", at most 128 characters. Loose on purpose (tomorrow's ids must
# pass), strict enough that a typo'd URL, whitespace or an empty string does not.
MODEL_ID = re.compile(r"^#?[A-Za-z0-9][A-Za-z0-9._:+-]*(?:/[A-Za-z0-9][A-Za-z0-9._:+-]*)*$")
MAX_MODEL_ID_CHARS = 128


class Family(StrEnum):
    """Which of the three ``result`` shapes a model's answers take."""

    OPENAI = "openai"  # {text, usage{...tokens}}
    DEEPGRAM = "deepgram"  # {metadata, results.channels.alternatives[...]}
    ASSEMBLYAI = "assemblyai"  # {id, status, text, words, utterances, audio_duration...}


@dataclass(frozen=True, slots=True)
class Price:
    """USD list price. Token prices are per million tokens; ``per_minute`` per audio minute."""

    audio_input_per_mtok: float = 0.0
    text_input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    per_minute: float = 0.0

    @property
    def token_priced(self) -> bool:
        return max(self.audio_input_per_mtok, self.text_input_per_mtok) > 0


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    family: Family
    price: Price


def _deepgram(name: str, per_minute: float) -> ModelInfo:
    return ModelInfo(f"#g1_{name}", Family.DEEPGRAM, Price(per_minute=per_minute))


_NOVA2_DOMAINS = (
    "general",
    "meeting",
    "phonecall",
    "voicemail",
    "finance",
    "conversationalai",
    "video",
    "medical",
    "drivethru",
    "automotive",
)

MODELS: dict[str, ModelInfo] = {
    m.id: m
    for m in (
        ModelInfo(
            "openai/gpt-4o-transcribe",
            Family.OPENAI,
            Price(audio_input_per_mtok=6.0, text_input_per_mtok=2.5, output_per_mtok=10.0),
        ),
        ModelInfo(
            "openai/gpt-4o-mini-transcribe",
            Family.OPENAI,
            Price(audio_input_per_mtok=3.0, text_input_per_mtok=1.25, output_per_mtok=5.0),
        ),
        *(
            _deepgram(f"whisper-{size}", 0.0048)
            for size in ("tiny", "base", "small", "medium", "large")
        ),
        *(_deepgram(f"nova-2-{domain}", 0.0043) for domain in _NOVA2_DOMAINS),
        *(_deepgram(f"nova-3-{domain}", 0.0043) for domain in ("general", "medical")),
        ModelInfo("aai/slam-1", Family.ASSEMBLYAI, Price(per_minute=0.0045)),
        ModelInfo("aai/universal", Family.ASSEMBLYAI, Price(per_minute=0.0025)),
        ModelInfo("aai/best", Family.ASSEMBLYAI, Price(per_minute=0.0062)),
        ModelInfo("aai/nano", Family.ASSEMBLYAI, Price(per_minute=0.002)),
    )
}


def get_model(model_id: str) -> ModelInfo | None:
    """The catalog entry for ``model_id``, or ``None`` when the vendor does not list it."""
    return MODELS.get(model_id)


def family_of(model_id: str) -> Family | None:
    """The result family of ``model_id``, or ``None`` when unknown."""
    info = MODELS.get(model_id)
    return info.family if info else None


# The vendor prefixes ids by upstream provider; an unlisted id with a known prefix almost
# surely answers in that provider's shape. Only a hint: normalize reads the shape itself.
_PREFIXES = (("openai/", Family.OPENAI), ("#g1_", Family.DEEPGRAM), ("aai/", Family.ASSEMBLYAI))


def guess_family(model_id: str) -> Family | None:
    """The listed family of ``model_id``, else the one its prefix suggests, else ``None``."""
    listed = family_of(model_id)
    if listed is not None:
        return listed
    return next((family for prefix, family in _PREFIXES if model_id.startswith(prefix)), None)
