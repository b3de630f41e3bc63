"""The ``result`` object of a completed job, in the shape of its model's family.

Shapes follow the contract (tests/contract/aiml-stt-openapi.json) exactly, even where it
differs from the upstream vendors: Deepgram's ``results.channels`` is an *object* holding
``alternatives``, ``metadata.channels`` is a number, and ``paragraphs`` is a list of
``{transcript, paragraphs{...}}``. The AssemblyAI branch allows no extra keys, so only keys
the schema lists are sent (and ``speech_model`` only for the models its enum names).
AssemblyAI word times are milliseconds, as upstream; the other families use seconds.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

from workers.emulator.jobs import Job
from workers.emulator.models import Family
from workers.emulator.transcript import Script, script_for, usage_for

__all__ = ["build_result"]

JSONDict = dict[str, Any]
_SENTENCES_PER_PARAGRAPH = 3
_SENTENCES_PER_UTTERANCE = 2
_AAI_SPEECH_MODELS = {"aai/best": "best", "aai/slam-1": "slam-1", "aai/universal": "universal"}


def build_result(job: Job) -> JSONDict:
    """The ``result`` of ``job`` once completed (deterministic for a given job)."""
    script = script_for(job.source, job.duration, empty=job.forcing.empty)
    if job.model.family is Family.OPENAI:
        return {
            "text": script.text,
            "usage": usage_for(job.duration, len(script.words), job.prompt),
        }
    timed = _timed_words(job, script)
    if job.model.family is Family.DEEPGRAM:
        return _deepgram(job, script, timed)
    return _assemblyai(job, script, timed)


_Timed = list[tuple[str, float, float, float]]  # punctuated word, start s, end s, confidence


def _timed_words(job: Job, script: Script) -> _Timed:
    """Spread the words evenly over the audio, each with a seeded confidence."""
    words = script.words
    if not words:
        return []
    rng = random.Random(f"confidence:{job.source}")
    slot = job.duration / len(words)
    return [
        (w, round(i * slot, 3), round(i * slot + 0.85 * slot, 3), round(rng.uniform(0.8, 0.999), 4))
        for i, w in enumerate(words)
    ]


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


def _sentence_spans(script: Script, timed: _Timed) -> list[tuple[str, _Timed]]:
    spans: list[tuple[str, _Timed]] = []
    i = 0
    for sentence in script.sentences:
        spans.append((" ".join(sentence), timed[i : i + len(sentence)]))
        i += len(sentence)
    return spans


def _deepgram(job: Job, script: Script, timed: _Timed) -> JSONDict:
    model_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, job.model.id))
    flavour = job.model.id.removeprefix("#g1_")  # "nova-2-meeting" or "whisper-large"
    if flavour.startswith("nova"):
        arch, _, domain = flavour.rpartition("-")
        name = f"{domain}-{arch}"
    else:
        arch, name = "whisper", flavour
    spans = _sentence_spans(script, timed)
    paragraphs = []
    for k in range(0, len(spans), _SENTENCES_PER_PARAGRAPH):
        chunk = spans[k : k + _SENTENCES_PER_PARAGRAPH]
        words = [w for _, ws in chunk for w in ws]
        sentences = [{"text": text, "start": ws[0][1], "end": ws[-1][2]} for text, ws in chunk]
        paragraphs.append(
            {
                "transcript": " ".join(text for text, _ in chunk),
                "paragraphs": {
                    "sentences": sentences,
                    "num_words": len(words),
                    "start": words[0][1],
                    "end": words[-1][2],
                },
            }
        )
    alternative = {
        "transcript": script.text,
        "confidence": _mean([c for *_, c in timed]),
        "words": [
            {
                "word": w.rstrip(",.?").lower(),
                "start": start,
                "end": end,
                "confidence": conf,
                "punctuated_word": w,
            }
            for w, start, end, conf in timed
        ],
        "paragraphs": paragraphs,
    }
    return {
        "metadata": {
            "transaction_key": "deprecated",
            "request_id": str(uuid.uuid5(uuid.NAMESPACE_OID, job.generation_id)),
            "sha256": job.audio_sha256,
            "created": _iso(job.created_wall),
            "duration": job.duration,
            "channels": 1,
            "models": [model_uuid],
            "model_info": {
                model_uuid: {
                    "name": name,
                    "version": "2024-01-09.29447",
                    "arch": arch,
                }
            },
        },
        "results": {"channels": {"alternatives": [alternative]}},
    }


def _assemblyai(job: Job, script: Script, timed: _Timed) -> JSONDict:
    def word(w: str, start: float, end: float, conf: float, speaker: str) -> JSONDict:
        ms = {"start": round(start * 1000), "end": round(end * 1000)}
        return {"confidence": conf, **ms, "text": w, "speaker": speaker}

    words: list[JSONDict] = []
    utterances: list[JSONDict] = []
    spans = _sentence_spans(script, timed)
    for k in range(0, len(spans), _SENTENCES_PER_UTTERANCE):
        speaker = "AB"[(k // _SENTENCES_PER_UTTERANCE) % 2]
        chunk = spans[k : k + _SENTENCES_PER_UTTERANCE]
        uwords = [word(*w, speaker) for _, ws in chunk for w in ws]
        words.extend(uwords)
        utterances.append(
            {
                "confidence": _mean([w["confidence"] for w in uwords]),
                "end": uwords[-1]["end"],
                "speaker": speaker,
                "start": uwords[0]["start"],
                "text": " ".join(text for text, _ in chunk),
                "words": uwords,
            }
        )
    result: JSONDict = {
        "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, job.generation_id)),
        "status": "completed",
        "language_model": "assemblyai_default",
        "acoustic_model": "assemblyai_default",
        "language_code": job.language or "en_us",
        "language_detection": False,
        "text": script.text,
        "words": words,
        "utterances": utterances,
        "confidence": _mean([c for *_, c in timed]),
        "audio_duration": job.duration,
        "punctuate": True,
        "format_text": True,
        "disfluencies": False,
        "multichannel": False,
        "speaker_labels": True,
        "speed_boost": False,
        "auto_highlights": False,
        "filter_profanity": False,
        "redact_pii": False,
        "content_safety": False,
        "iab_categories": False,
        "auto_chapters": False,
        "summarization": False,
        "sentiment_analysis": False,
        "entity_detection": False,
        "throttled": False,
    }
    speech_model = _AAI_SPEECH_MODELS.get(job.model.id)
    if speech_model is not None:
        result["speech_model"] = speech_model
    return result


def _iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
