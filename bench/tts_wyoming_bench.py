"""TTS against wyoming-piper measured by a third party's client: wyoming-bench (PyPI), as issue 20 did.

    .venv/bin/python bench/tts_wyoming_bench.py [--rounds 3] [--texts bench/tts_unseen.txt] [-- EXTRA]

Starts the reference (wyoming-piper 2.5.2, the joe voice, as bench/tts.py does) and ours (the plain joe
voice, speech cache off) on free ports, installs wyoming-bench into .cache/bench/wyoming-bench once, and
runs `wyoming-bench tts` against both with the texts of the file (its `class<TAB>` prefixes dropped).
wyoming-bench appends a random nonce to every text by default, so no server can answer from a cache;
its report (TTFT = first audio, Total = last audio-stop / synthesize-stopped, per mode) is printed as
it is and saved beside our own results.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _suite import RESULTS
from tts import (
    REPO,
    TTS_VOICE,
    tts_ensure_reference,
    tts_read_texts,
    tts_reference_data,
    tts_start,
    tts_wait_ready,
)

from wyoming_persona.suite import free_ports

BENCH_VENV = REPO / ".cache" / "bench" / "wyoming-bench"
BENCH_VERSION = "wyoming-bench==2026.10.0"


def ensure_wyoming_bench() -> Path:
    command = BENCH_VENV / "bin" / "wyoming-bench"
    if not command.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run([str(BENCH_VENV / "bin" / "pip"), "install", "-q", BENCH_VERSION], check=True)
    return command


async def run(args: argparse.Namespace) -> int:
    python, command = tts_ensure_reference(), ensure_wyoming_bench()
    texts = [text for _, text in tts_read_texts(args.texts)]
    with tempfile.TemporaryDirectory(prefix="wp-bench-wb-") as tmp:
        root = Path(tmp)
        data = tts_reference_data(REPO / ".cache" / "bench" / "ref-piper-data")
        ports = free_ports(("ref", "ours"))
        ref = tts_start(
            "wyoming-piper",
            [str(python), "-m", "wyoming_piper", "--uri", f"tcp://127.0.0.1:{ports['ref']}",
             "--voice", TTS_VOICE, "--data-dir", str(data), "--download-dir", str(data)],
            ports["ref"], root / "ref.log",
        )  # fmt: skip
        ours = tts_start(
            "wyoming-persona",
            [sys.executable, "-m", "wyoming_persona", "tts", "--uri", f"tcp://127.0.0.1:{ports['ours']}",
             "--personas-dir", str(REPO / "config" / "personas"), "--state-dir", str(root / "state"),
             "--speech-cache-mib", "0", *args.ours],
            ports["ours"], root / "ours.log",
        )  # fmt: skip
        try:
            await asyncio.gather(tts_wait_ready(ref), tts_wait_ready(ours))
            texts_file = root / "texts.txt"
            texts_file.write_text("\n".join(texts) + "\n")
            done = await asyncio.to_thread(
                subprocess.run,
                [str(command), "tts", ref.uri, ours.uri, "--texts-file", str(texts_file),
                 "--rounds", str(args.rounds), "--config", f'{{"voice": "{TTS_VOICE}"}}'],
                capture_output=True, text=True, timeout=3600,
            )  # fmt: skip
        finally:
            for server in (ref, ours):
                server.process.terminate()
            for server in (ref, ours):
                server.process.wait(10)
    print(done.stdout)
    print(done.stderr[-2000:], file=sys.stderr)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "tts_wyoming_bench.txt"
    out.write_text(f"reference = {ref.uri} (wyoming-piper), ours = {ours.uri}\n{done.stdout}")
    print(f"saved {out}")
    return done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--texts", type=Path, default=REPO / "bench" / "tts_unseen.txt")
    parser.add_argument("ours", nargs="*", help="extra flags for our server (after --)")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
