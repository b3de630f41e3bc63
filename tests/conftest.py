"""Shared fixtures: each lives in tests/fixtures/, one module per service."""

pytest_plugins = [
    "tests.fixtures.emulator",
    "tests.fixtures.services",
    "tests.fixtures.stack",
    "tests.fixtures.reliability",
    "tests.fixtures.audio_files",
]
