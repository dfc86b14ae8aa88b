"""End of speech -> transcript when the ASR ends the utterance itself: silence endpoint alone vs Smart Turn.

    .venv/bin/python bench/endpoint.py [--rounds 3] [--endpointing-ms 500]

Starts two ASR servers as `make run` does (`asr --endpointing-ms 500`, Whisper tiny.en), one of them with
`--smart-turn`, and streams the same Piper-made questions and commands to both in real time as a
satellite does: a 32 ms chunk is sent once it has been "recorded", then silence until the transcript
arrives. Latency is from the end of the speech in the clip (its last loud sample) to the transcript.
Servers alternate per clip. Also prints what Smart Turn makes of each clip on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from _suite import machine, piper_clips, save  # noqa: E402
from wyoming.asr import Transcribe  # noqa: E402
from wyoming.event import async_read_event, async_write_event  # noqa: E402
from wyoming.info import Describe  # noqa: E402

from wyoming_persona.audio import (  # noqa: E402
    AudioChunk,
    AudioStart,
    AudioStop,
    pcm_chunks,
    pcm_to_float,
    silence,
)

CHUNK_MS = 32
LEAD_S = 0.3
TAIL_S = 3.0
LOUD = 0.02  # |sample| above this counts as speech for "end of speech"
TEXTS = (
    "What can you do?",
    "Tell me a fun fact about the ocean.",
    "How should I start my morning?",
    "What is a good name for a cat?",
    "Why is the sky blue?",
    "Turn on the kitchen light.",
    "What time is it?",
    "Open the garage door.",
)
_READY_TIMEOUT = 180


def make_clips() -> dict[str, bytes]:
    return piper_clips(TEXTS)


def speech_end_s(pcm: bytes) -> float:
    loud = np.nonzero(np.abs(pcm_to_float(pcm)) > LOUD)[0]
    return (int(loud[-1]) + 1) / 16000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def asr_server(args: tuple[str, ...], log: Path) -> AsyncIterator[int]:
    port = free_port()
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wyoming_persona", "asr", "--debug",
            "--uri", f"tcp://127.0.0.1:{port}", *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            if process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"asr {' '.join(args)} did not start; see {log}")
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(2):
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    await async_write_event(Describe().event(), writer)
                    ready = await async_read_event(reader)
                    writer.close()
                    if ready is not None:
                        break
            await asyncio.sleep(0.5)
        yield port
    finally:
        process.terminate()
        await process.wait()


async def one_turn(port: int, pcm: bytes) -> tuple[float, str]:
    """Seconds from the end of speech to the transcript, and the transcript."""
    audio = silence(LEAD_S) + pcm + silence(TAIL_S)
    end_of_speech = LEAD_S + speech_end_s(pcm)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await async_write_event(Transcribe(language="en").event(), writer)
        await async_write_event(AudioStart(16000, 2, 1).event(), writer)
        answer = asyncio.create_task(_transcript(reader))
        start = time.monotonic()
        position = 0.0
        for chunk in pcm_chunks(audio, milliseconds=CHUNK_MS):
            position += len(chunk) / 32000
            await asyncio.wait([answer], timeout=max(0.0, start + position - time.monotonic()))
            if answer.done():
                break
            await async_write_event(AudioChunk(16000, 2, 1, chunk).event(), writer)
        async with asyncio.timeout(60):
            text, arrived = await answer
        await async_write_event(AudioStop().event(), writer)
        return arrived - (start + end_of_speech), text
    finally:
        writer.close()


async def _transcript(reader: asyncio.StreamReader) -> tuple[str, float]:
    while True:
        event = await async_read_event(reader)
        if event is None:
            raise RuntimeError("the server hung up before its transcript")
        if event.type == "transcript":
            return event.data.get("text", ""), time.monotonic()


def judge_clips(clips: dict[str, bytes]) -> dict[str, float]:
    from wyoming_persona.asr.smart_turn import SmartTurnModel

    model = SmartTurnModel()
    return {
        text: round(model.probability(pcm_to_float(silence(LEAD_S) + pcm + silence(0.2))), 3)
        for text, pcm in clips.items()
    }


async def bench(rounds: int, endpoint_ms: int) -> int:
    clips = make_clips()
    scores = judge_clips(clips)
    base = ("--endpointing-ms", str(endpoint_ms))
    modes = {"silence": base, "smart_turn": (*base, "--smart-turn")}
    results: dict[str, list[float]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory(prefix="wp-endpoint-") as tmp:
        logs = {mode: Path(tmp) / f"{mode}.log" for mode in modes}
        async with (
            asr_server(modes["silence"], logs["silence"]) as silence_port,
            asr_server(modes["smart_turn"], logs["smart_turn"]) as smart_port,
        ):
            ports = {"silence": silence_port, "smart_turn": smart_port}
            for port in ports.values():
                await one_turn(port, clips[TEXTS[0]])  # warm-up
            for round_index in range(rounds):
                for index, (text, pcm) in enumerate(clips.items()):
                    order = list(modes) if (round_index + index) % 2 == 0 else list(reversed(modes))
                    row = []
                    for mode in order:
                        seconds, heard = await one_turn(ports[mode], pcm)
                        results[mode].append(seconds)
                        row.append(f"{mode} {seconds * 1000:5.0f} ms{'' if heard else ' (empty!)'}")
                    print(
                        f"round {round_index + 1} {' | '.join(sorted(row))} | p={scores[text]:.2f} {text!r}"
                    )
        log = logs["smart_turn"].read_text()
    ended = log.count("complete, ending the utterance")
    judged_ms = [float(ms) for ms in re.findall(r"Smart Turn [0-9.]+ \(([0-9]+) ms\)", log)]
    medians = {mode: round(statistics.median(values) * 1000, 1) for mode, values in results.items()}
    print(f"\nbench/endpoint on {machine()}: {rounds} rounds x {len(TEXTS)} clips, endpoint {endpoint_ms} ms")
    print(f"end of speech -> transcript, median: silence endpoint {medians['silence']:.0f} ms, "
          f"Smart Turn {medians['smart_turn']:.0f} ms")  # fmt: skip
    print(f"turns Smart Turn ended early (warm-up included): {ended} of {rounds * len(TEXTS) + 1}")
    judge_median = statistics.median(judged_ms) if judged_ms else None
    print(f"a judgement took {judge_median} ms (median of {len(judged_ms)}, on time or too late)")
    path = save(
        "endpoint",
        {"rounds": rounds, "endpoint_ms": endpoint_ms, "medians_ms": medians, "smart_turn_scores": scores,
         "smart_turn_ended": ended, "judgement_ms": judged_ms},
    )  # fmt: skip
    print(f"raw numbers: {path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--endpointing-ms", type=int, default=500)
    args = parser.parse_args()
    return asyncio.run(bench(args.rounds, args.endpointing_ms))


if __name__ == "__main__":
    raise SystemExit(main())
