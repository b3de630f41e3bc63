"""The one table of speech-to-text models: id, result family and price.

The emulator accepts exactly these ids, ``transcribe()`` validates against them, and cost
estimation reads its prices from here, so adding a model is one line.

Prices are *estimates* in USD from the upstream providers' public list prices (the AI/ML API
bills in its own credits, close to these). Token-priced models (OpenAI) are charged per
million tokens; the others per minute of audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["MODELS", "Family", "ModelInfo", "Price", "family_of", "get_model"]


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
