"""The models the emulated vendor serves, and the shape each one's ``result`` takes.

Written from the vendor's documentation (docs.aimlapi.com, speech-to-text models), not
from ``tasks.catalog``: the emulator stands in for the vendor, so it must not share the
client's idea of what the vendor serves. If the two lists drift apart, a test says so
(tests/integration/test_emulator_models.py) instead of both being wrong together.

A test can teach a running emulator more models (``configure(models={id: family})`` or
``--model ID=FAMILY``), the way the vendor adds one without telling anybody.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

__all__ = ["DOCUMENTED_MODELS", "Family", "Model", "parse_models"]


class Family(StrEnum):
    """Which upstream provider's answer a model's ``result`` passes through."""

    OPENAI = "openai"  # {text, usage}
    DEEPGRAM = "deepgram"  # {metadata, results: {channels: {alternatives}}}
    ASSEMBLYAI = "assemblyai"  # {id, status, text, words, utterances, audio_duration}


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    family: Family


def _listed(family: Family, ids: Iterable[str]) -> list[Model]:
    return [Model(model_id, family) for model_id in ids]


# The vendor's speech-to-text model pages, by provider.
_DEEPGRAM_DOMAINS = (
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
DOCUMENTED_MODELS: Mapping[str, Model] = MappingProxyType(
    {
        m.id: m
        for m in (
            *_listed(Family.OPENAI, ("openai/gpt-4o-transcribe", "openai/gpt-4o-mini-transcribe")),
            *_listed(
                Family.DEEPGRAM,
                (f"#g1_whisper-{s}" for s in ("tiny", "base", "small", "medium", "large")),
            ),
            *_listed(Family.DEEPGRAM, (f"#g1_nova-2-{d}" for d in _DEEPGRAM_DOMAINS)),
            *_listed(Family.DEEPGRAM, ("#g1_nova-3-general", "#g1_nova-3-medical")),
            *_listed(Family.ASSEMBLYAI, ("aai/slam-1", "aai/universal", "aai/best", "aai/nano")),
        )
    }
)


def parse_models(values: Mapping[str, object]) -> tuple[Model, ...]:
    """``{id: family}`` (admin JSON, or ``--model ID=FAMILY``) as models; ``ValueError`` if bad."""
    models = []
    for model_id, family in values.items():
        if not isinstance(model_id, str) or not model_id.strip():
            raise ValueError("model ids must be non-empty strings")
        try:
            models.append(Model(model_id, Family(str(family))))
        except ValueError:
            choices = [f.value for f in Family]
            raise ValueError(f"model {model_id!r}: family must be one of {choices}") from None
    return tuple(models)
