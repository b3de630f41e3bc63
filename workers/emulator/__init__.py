"""An emulator of the AI/ML API's async speech-to-text endpoints, for tests and benchmarks.

It speaks the contract in tests/contract/aiml-stt-openapi.json (and the variants other
vendor pages show), injects seeded faults, and reports what clients did through an admin
API. docs/emulator.md is the manual; ``expected_transcript`` tells a test the exact text the
emulator will return for an audio URL.
"""

from workers.emulator.app import build_app
from workers.emulator.config import DEFAULT_API_KEY, Dialect, EmulatorConfig, FaultSpec
from workers.emulator.transcript import duration_for, expected_transcript

__all__ = [
    "DEFAULT_API_KEY",
    "Dialect",
    "EmulatorConfig",
    "FaultSpec",
    "build_app",
    "duration_for",
    "expected_transcript",
]
