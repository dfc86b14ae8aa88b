"""The ASR server over loopback TCP with real Whisper tiny.en, Silero and Piper speech."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys

from vad.helpers import PCM16K, Speech, connect, frame, normalize, types, without_trailing_quiet
from wyoming.asr import Transcribe
from wyoming.event import Event
from wyoming.info import Describe, Info

from wyoming_persona.asr.handler import AsrSettings
from wyoming_persona.audio import AudioChunk, AudioStart, AudioStop, PcmFormat, resample, silence
from wyoming_persona.wyoming_server import FrameLimits

KITCHEN = "Turn on the kitchen light."
TIMER = "Open the garage door."
STREAM_ORDER_TAIL = ["transcript", "transcript-stop"]


async def transcribe(server, pcm: bytes, fmt: PcmFormat = PCM16K, language: str | None = "en") -> list[Event]:
    async with connect(server) as client:
        await client.send(Transcribe(language=language).event())
        await client.send_audio(pcm, fmt)
        return await client.receive_until("transcript-stop")


def transcript_of(events: list[Event]) -> str:
    """The plain transcript, after checking the streaming order and that the chunks add up to it."""
    names = types(events)
    assert names[0] == "transcript-start", names
    assert names[-2:] == STREAM_ORDER_TAIL, names
    assert set(names[1:-2]) <= {"transcript-chunk"}, names
    text = events[-2].data["text"]
    assert "".join(e.data["text"] for e in events if e.type == "transcript-chunk") == text
    assert events[-2].data.get("language") == "en"
    return text


async def test_command_with_trailing_silence_uses_the_early_decode(server, speech, caplog) -> None:
    caplog.set_level(logging.INFO, logger="wyoming_persona.asr")
    events = await transcribe(server, silence(0.4) + speech.say(KITCHEN) + silence(0.8))
    assert normalize(transcript_of(events)) == "turn on the kitchen light"
    assert "transcript-chunk" in types(events)
    assert "early decode" in caplog.text


async def test_command_without_trailing_silence(server, speech, caplog) -> None:
    caplog.set_level(logging.INFO, logger="wyoming_persona.asr")
    pcm = without_trailing_quiet(speech.say(TIMER))
    assert normalize(transcript_of(await transcribe(server, pcm))) == "open the garage door"
    assert "decoded at audio-stop" in caplog.text


async def test_silence_gives_an_empty_transcript_without_running_whisper(server, model_runs) -> None:
    events = await transcribe(server, silence(3.0))
    assert types(events) == ["transcript-start", *STREAM_ORDER_TAIL]
    assert transcript_of(events) == ""
    assert model_runs == []


async def test_speech_pause_speech_drops_the_early_result(server, speech, model_runs) -> None:
    pcm = silence(0.3) + speech.say(KITCHEN) + silence(1.0) + speech.say(TIMER) + silence(0.8)
    text = normalize(transcript_of(await transcribe(server, pcm)))
    assert text == "turn on the kitchen light open the garage door"
    assert text in [normalize(run) for run in model_runs]


async def test_other_formats_are_converted(server, speech) -> None:
    pcm = silence(0.3) + speech.native_pcm(KITCHEN) + silence(0.6, speech.native)
    stereo = PcmFormat(speech.native.rate, 2, 2)
    events = await transcribe(server, resample(pcm, speech.native, stereo), stereo, language="en-US")
    assert normalize(transcript_of(events)) == "turn on the kitchen light"


async def test_concurrent_clients_get_their_own_transcripts(server, speech) -> None:
    clips = {
        "turn on the kitchen light": silence(0.3) + speech.say(KITCHEN) + silence(0.6),
        "open the garage door": silence(0.3) + speech.say(TIMER) + silence(0.6),
        "": silence(1.5),
    }
    results = await asyncio.gather(*(transcribe(server, pcm) for pcm in clips.values()))
    assert [normalize(transcript_of(events)) for events in results] == list(clips)


async def test_describe_is_answered_while_another_client_transcribes(server, speech, worker_gate) -> None:
    async with connect(server) as busy, connect(server) as other:
        await busy.send(Transcribe(language="en").event())
        await busy.send_audio(silence(0.3) + speech.say(KITCHEN) + silence(0.6))
        reply = asyncio.ensure_future(busy.receive_until("transcript-stop"))
        await other.send(Describe().event())
        info = Info.from_event(await other.receive())
        assert not reply.done(), "the transcript cannot be ready while the worker is held"
        worker_gate.set()
        assert normalize(transcript_of(await reply)) == "turn on the kitchen light"
    program = info.asr[0]
    assert program.supports_transcript_streaming and program.requires_external_vad
    assert program.models[0].name == "tiny.en" and program.models[0].languages == ["en"]


async def test_disconnect_cancels_queued_work(server, speech, worker_gate, model_runs) -> None:
    async with connect(server) as client:
        await client.send_audio(silence(0.3) + speech.say(KITCHEN) + silence(0.6))
    # the server notices the hang-up, then the worker is released: the job must not run
    async with connect(server) as probe:
        await probe.send(Describe().event())
        await probe.receive()
    await asyncio.sleep(0.2)
    worker_gate.set()
    assert normalize(transcript_of(await transcribe(server, silence(0.2) + speech.say(TIMER)))) == (
        "open the garage door"
    )
    assert [normalize(run) for run in model_runs] == ["open the garage door"]


async def test_bad_input_gets_an_error_and_the_connection_keeps_working(asr_server, speech) -> None:
    settings = AsrSettings(max_seconds=2.5)
    async with asr_server(settings, FrameLimits(max_payload_bytes=64_000)) as server:
        async with connect(server) as client:
            await client.send(AudioChunk(16000, 2, 1, silence(0.1)).event(), AudioStop().event())
            assert (await client.receive()).data["code"] == "no-audio-start"
            await client.send(AudioStart(16000, 2, 1).event(), AudioChunk(16000, 2, 1, silence(0.1)).event())
            await client.send(AudioChunk(16000, 2, 2, silence(0.1, PcmFormat(16000, 2, 2))).event())
            await client.send(AudioStop().event())
            assert (await client.receive()).data["code"] == "format-mismatch"
            await client.send_audio(silence(3.0))
            assert (await client.receive()).data["code"] == "too-long"
            await client.send(Transcribe(language="de").event())
            assert (await client.receive()).data["code"] == "unsupported-language"
            await client.send(Event("synthesize", {"text": "hi"}))
            assert (await client.receive()).data["code"] == "unexpected"
            await client.send(AudioStop().event())
            assert (await client.receive()).data["code"] == "no-audio-start"
            await client.send(Transcribe(language="en").event())
            await client.send_audio(silence(0.2) + speech.say(KITCHEN) + silence(0.6))
            assert normalize(transcript_of(await client.receive_until("transcript-stop"))) == (
                "turn on the kitchen light"
            )
        for raw in (b"\x00\xff garbage\n", frame("audio-chunk", {"rate": 16000}, bytes(64_002))):
            async with connect(server) as client:
                client.writer.write(raw)
                await client.writer.drain()
                assert (await client.receive()).type == "error"
                assert await client.closed()
        assert transcript_of(await transcribe(server, silence(1.0))) == ""


def test_stdio_subprocess_smoke(speech: Speech) -> None:
    from wyoming.event import read_event, write_event

    proc = subprocess.Popen(
        [sys.executable, "-m", "wyoming_persona", "asr", "--uri", "stdio://", "--threads", "2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )
    try:
        pcm = silence(0.3) + speech.say(KITCHEN) + silence(0.6)
        for event in (
            Describe().event(),
            Transcribe(language="en").event(),
            AudioStart(16000, 2, 1).event(),
            AudioChunk(16000, 2, 1, pcm).event(),
            AudioStop().event(),
        ):
            write_event(event, proc.stdin)
        proc.stdin.flush()
        events = [read_event(proc.stdout) for _ in range(5)]
        assert types(events)[0] == "info"
        assert normalize(transcript_of(events[1:])) == "turn on the kitchen light"
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        proc.stdout.close()


async def test_endpointing_answers_before_audio_stop(asr_server, speech) -> None:
    settings = AsrSettings(endpoint_ms=500, no_speech_seconds=1.5)
    async with asr_server(settings) as server, connect(server) as client:
        await client.send(Describe().event())
        assert not Info.from_event(await client.receive()).asr[0].requires_external_vad
        await client.send(Transcribe(language="en").event())
        await client.send_audio(silence(0.3) + speech.say(KITCHEN) + silence(1.0), stop=False)
        events = await client.receive_until("transcript-stop")
        assert normalize(transcript_of(events)) == "turn on the kitchen light"
        # the rest of that stream is ignored quietly, then the next round works
        await client.send_audio(silence(0.5), start=False)
        await client.send(Transcribe(language="en").event())
        await client.send_audio(silence(2.0), stop=False)
        assert transcript_of(await client.receive_until("transcript-stop")) == ""
        await client.send(AudioStop().event(), Describe().event())
        assert (await client.receive()).type == "info", "nothing but the describe answer is pending"
