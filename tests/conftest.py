"""Shared fixtures: each lives in tests/fixtures/, one module per service."""

import signal

pytest_plugins = [
    "tests.fixtures.emulator",
    "tests.fixtures.services",
    "tests.fixtures.stack",
    "tests.fixtures.reliability",
    "tests.fixtures.rabbitmq",
    "tests.fixtures.audio_files",
    "tests.fixtures.beat",
    "tests.fixtures.scripted_api",
]

# A suite started in the background by a non-interactive shell (`.ci/run &`, nohup) runs
# with SIGINT ignored, and every process it starts inherits that: the tests that press
# Ctrl-C on a CLI or the demo would then wait forever. A handler, unlike "ignored", is
# reset to the default when a child execs, so the children get the usual Ctrl-C.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
