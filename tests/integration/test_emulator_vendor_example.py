"""The vendor's own example client, from its doc page, runs to completion against us.

Only ``base_url`` and ``api_key`` are changed (string substitution). The example sleeps 10 s
between polls, so the emulator gets a short fixed processing time: exactly one sleep.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.emulator import EmulatorHandle
from workers.emulator import expected_transcript

DOC = Path(__file__).resolve().parents[1] / "contract" / "vendor-doc-gpt-4o-mini-transcribe.md"
BASE_URL_LINE = 'base_url = "https://api.aimlapi.com/v1"'
API_KEY_LINE = 'api_key = "<YOUR_AIMLAPI_KEY>"'
SAMPLE_URL = "https://audio-samples.github.io/samples/mp3/blizzard_primed/sample-0.mp3"


def vendor_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) == 1, "expected exactly one python example on the doc page"
    code = str(blocks[0])
    assert BASE_URL_LINE in code and API_KEY_LINE in code and SAMPLE_URL in code
    return code


@pytest.mark.slow
def test_vendor_example_client_runs_to_completion(emulator: EmulatorHandle) -> None:
    emulator.configure(queue_delay=0.0, fixed=1.0)
    code = vendor_example().replace(BASE_URL_LINE, f'base_url = "{emulator.api_base}"')
    code = code.replace(API_KEY_LINE, f'api_key = "{emulator.api_key}"')

    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )

    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert re.fullmatch(r"\{'generation_id': '[A-Za-z0-9]{21}', 'status': 'queued'\}", lines[0])
    assert lines[1] == "Status: generating. Checking again in 10 seconds."
    assert lines[2] == "Processing complete:"
    assert expected_transcript(SAMPLE_URL) in run.stdout
    assert '"type": "tokens"' in run.stdout
    assert emulator.create_counts() == {SAMPLE_URL: 1}
