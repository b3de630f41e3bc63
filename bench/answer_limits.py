"""What reading one API answer costs, within the limits of tasks/answers.py (issue 12 case 2).

Each shape is decoded in a fresh Python process, so its peak RSS is its own; the table
shows the time ``decode_answer`` took, what it decided, and the process's peak RSS above
a process that only built the body. Run: ``python bench/answer_limits.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SHAPES = {
    "[ x 100,000": 'b"[" * 100_000',
    "16 MiB of [{},{},...]": 'b"[" + b"{}," * 5_592_400 + b"{}]"',
    "330,000 x {a:1} (1M values)": 'b"[" + b\'{"a":1},\' * 330_000 + b"{}]"',
    "16 MiB of short strings": 'b"[" + b\'"aaaaaaaaaaaaaaaaaaaa",\' * 700_000 + b\'""]\'',
    "Deepgram, 40,000 words (4.8 MB)": "deepgram()",
}

PROGRAM = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from tasks.answers import decode_answer
def deepgram():
    words = [{{"word": "hello", "start": i * 0.5, "end": i * 0.5 + 0.4, "confidence": 0.98,
              "speaker": 0, "punctuated_word": "Hello,"}} for i in range(40_000)]
    return json.dumps({{"results": {{"channels": [{{"alternatives": [
        {{"transcript": "hello " * 40_000, "words": words}}]}}]}}}}).encode()
body = {expr}
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    decode_answer(body)
    outcome = "decoded"
except ValueError as exc:
    outcome = str(exc)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps([len(body), seconds, (peak - base) / 1024, outcome]))
"""


def main() -> None:
    print("| shape | bytes | decode s | peak RSS above the body, MiB | outcome |")
    print("|---|---|---|---|---|")
    for name, expr in SHAPES.items():
        code = PROGRAM.format(root=str(ROOT), expr=expr)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        size, seconds, mib, outcome = json.loads(out.stdout)
        print(f"| {name} | {size:,} | {seconds:.2f} | {mib:.0f} | {outcome} |")


if __name__ == "__main__":
    main()
