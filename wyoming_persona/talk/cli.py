"""`wyoming-persona talk`: drive one voice turn through running services and report the latency."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import wave
from dataclasses import asdict
from pathlib import Path

from wyoming.audio import AudioChunk

from ..options import add_persona_arguments, persona_manager
from ..personas import PersonaLoadError, UnknownPersonaError
from ..services import PORTS
from .audio_clip import AudioClip
from .turn import Endpoints, TurnError, TurnResult, TurnTimings, run_turn, synthesize_question

QUESTION_VOICE = "en_US-joe-medium"
STEPS = (
    ("transcript", "end of speech -> transcript"),
    ("first_reply_text", "end of speech -> first reply text"),
    ("first_reply_audio", "end of speech -> first reply audio"),
    ("total", "end of speech -> last reply audio"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--in", dest="wav_in", type=Path, help="the spoken question (WAV)")
    source.add_argument("--text", help="a question, spoken first by the TTS service")
    parser.add_argument("--out", type=Path, help="write the spoken reply here (WAV)")
    parser.add_argument("--persona", help="switch to this persona first")
    parser.add_argument("--asr", default=f"tcp://127.0.0.1:{PORTS['asr']}", help="ASR service URI")
    parser.add_argument(
        "--persona-uri", default=f"tcp://127.0.0.1:{PORTS['persona']}", help="persona service URI"
    )
    parser.add_argument("--tts", default=f"tcp://127.0.0.1:{PORTS['tts']}", help="TTS service URI")
    parser.add_argument("--language", default="en")
    parser.add_argument("--voice", help="TTS voice for the reply (default: the active persona)")
    parser.add_argument("--question-voice", default=QUESTION_VOICE, help="TTS voice that asks --text")
    parser.add_argument("--conversation-id", help="continue this conversation")
    parser.add_argument("--no-stream", action="store_true", help="whole reply first, then synthesize it")
    parser.add_argument("--no-realtime", action="store_true", help="send audio as fast as possible")
    parser.add_argument("--repeat", type=int, default=1, help="run N turns and print medians")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.add_argument("--timeout", type=float, default=60.0, help="longest wait for one answer (s)")
    add_persona_arguments(parser)


class _WavStream:
    """Writes reply audio to a WAV file as it arrives (the header is fixed up on close)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._wav: wave.Wave_write | None = None

    def __call__(self, chunk: AudioChunk) -> None:
        if self.path is None:
            return
        if self._wav is None:
            self._wav = wave.open(str(self.path), "wb")  # noqa: SIM115 - closed in close()
            self._wav.setframerate(chunk.rate)
            self._wav.setsampwidth(chunk.width)
            self._wav.setnchannels(chunk.channels)
        self._wav.writeframes(chunk.audio)

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None


async def _talk(args: argparse.Namespace) -> list[TurnResult]:
    endpoints = Endpoints(asr=args.asr, persona=args.persona_uri, tts=args.tts, timeout=args.timeout)
    if args.wav_in:
        question = AudioClip.from_wav(args.wav_in)
    else:
        spoken = await synthesize_question(args.text, endpoints, args.question_voice)
        question = spoken.padded(before=0.3, after=0.8)  # a satellite stops ~0.7 s after speech
    results = []
    for _ in range(max(1, args.repeat)):
        writer = _WavStream(args.out)
        try:
            results.append(
                await run_turn(
                    question,
                    endpoints,
                    language=args.language,
                    conversation_id=args.conversation_id,
                    voice=args.voice,
                    streaming=not args.no_stream,
                    realtime=not args.no_realtime,
                    on_audio=writer,
                )
            )
        finally:
            writer.close()
    return results


def _median(results: list[TurnResult], step: str) -> float | None:
    values = [getattr(r.timings, step) for r in results if getattr(r.timings, step) is not None]
    return statistics.median(values) if values else None


def _report(args: argparse.Namespace, results: list[TurnResult]) -> None:
    last = results[-1]
    medians = TurnTimings(**{step: _median(results, step) for step, _ in STEPS})
    audio = last.audio
    if args.json:
        print(
            json.dumps(
                {
                    "transcript": last.transcript,
                    "reply": last.reply,
                    "context": last.context,
                    "streaming": not args.no_stream,
                    "turns": len(results),
                    "latency_s": asdict(medians),
                    "runs": [asdict(r.timings) for r in results],
                    "reply_audio": None
                    if audio is None
                    else {"seconds": round(audio.seconds, 3), "rate": audio.rate, "path": str(args.out)},
                },
                indent=2,
            )
        )
        return
    print(f"transcript: {last.transcript}")
    print(f"reply:      {last.reply}")
    label = f"median of {len(results)} turns" if len(results) > 1 else "one turn"
    print(f"latency ({label}, {'streaming' if not args.no_stream else 'non-streaming'}):")
    for step, text in STEPS:
        value = getattr(medians, step)
        print(f"  {text:<36} {'-' if value is None else f'{value * 1000:7.0f} ms'}")
    if audio is not None and args.out:
        print(f"wrote {args.out} ({audio.seconds:.1f} s of audio at {audio.rate} Hz)")


def run(args: argparse.Namespace) -> int:
    if args.persona:
        try:
            persona_manager(args).set_active(args.persona)
        except (PersonaLoadError, UnknownPersonaError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    try:
        results = asyncio.run(_talk(args))
    except (TurnError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    _report(args, results)
    return 0
