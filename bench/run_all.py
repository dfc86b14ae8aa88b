"""Run every benchmark in turn (`make bench`): ASR and TTS against the reference servers, the whole
voice turn, and the suite's memory at idle. Each prints its own medians and ratios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHES = ("asr.py", "tts.py", "turn.py", "memory.py")


def main() -> int:
    here = Path(__file__).resolve().parent
    failed = []
    for bench in BENCHES:
        print(f"\n===== bench/{bench} =====", flush=True)
        if subprocess.run([sys.executable, str(here / bench)], check=False).returncode != 0:
            failed.append(bench)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
