"""The VAD server over loopback TCP with the real Silero model and Piper speech."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import numpy as np
import pytest
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping

from wyoming_persona.audio import AudioChunk, AudioStart, AudioStop, PcmFormat, resample, silence
from wyoming_persona.vad.segmenter import VadSettings
from wyoming_persona.wyoming_server import FrameLimits

from .helpers import PCM16K, Speech, connect, frame, seconds, types

TOLERANCE_MS = 160
FIRST = "Turn on the kitchen light."
SECOND = "What time is it?"


def voiced(pcm: bytes) -> tuple[float, float]:
    """Seconds where the clip's audible part starts and ends (1% of full scale)."""
    samples = np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32))
    loud = np.flatnonzero(samples > 328)
    return loud[0] / 16000, (loud[-1] + 1) / 16000


def two_utterances(speech: Speech, gap: float = 1.5) -> tuple[bytes, list[tuple[str, int]]]:
    """0.5 s silence, FIRST, `gap` s silence, SECOND, 0.8 s silence; and the expected events (ms)."""
    parts = [silence(0.5), speech.say(FIRST), silence(gap), speech.say(SECOND), silence(0.8)]
    expected: list[tuple[str, int]] = []
    offset = 0.0
    for part in parts:
        if part.strip(b"\0"):
            start, end = voiced(part)
            expected += [("voice-started", round((offset + start) * 1000))]
            expected += [("voice-stopped", round((offset + end) * 1000))]
        offset += seconds(part)
    return b"".join(parts), expected


async def detect(server, pcm: bytes, fmt: PcmFormat = PCM16K, chunk_ms: int = 64) -> list[Event]:
    """Stream audio, then collect every event until the server goes quiet (ping/pong as the fence)."""
    async with connect(server) as client:
        await client.send_audio(pcm, fmt, chunk_ms)
        await client.send(Ping(text="fence").event())
        events = await client.receive_until("pong")
    return [event for event in events if event.type != "pong"]


def assert_events(events: list[Event], expected: list[tuple[str, int]]) -> None:
    got = [(event.type, event.data["timestamp"]) for event in events]
    assert [kind for kind, _ in got] == [kind for kind, _ in expected], got
    for (kind, ms), (_, want) in zip(got, expected, strict=True):
        assert abs(ms - want) <= TOLERANCE_MS, f"{kind} at {ms} ms, expected about {want} ms: {got}"


async def test_two_utterances_get_two_start_stop_pairs(server, speech: Speech) -> None:
    pcm, expected = two_utterances(speech)
    assert_events(await detect(server, pcm), expected)


async def test_any_input_format_is_converted(server, speech: Speech) -> None:
    pcm, expected = two_utterances(speech)
    stereo48 = PcmFormat(48000, 2, 2)
    assert_events(await detect(server, resample(pcm, PCM16K, stereo48), stereo48, chunk_ms=20), expected)
    mono8_u8 = PcmFormat(8000, 1, 1)
    assert_events(await detect(server, resample(pcm, PCM16K, mono8_u8), mono8_u8, chunk_ms=100), expected)


async def test_silence_gives_no_events(server) -> None:
    assert await detect(server, silence(2.0)) == []


async def test_min_silence_merges_utterances_and_min_speech_drops_short_ones(vad_server, speech) -> None:
    pcm, expected = two_utterances(speech, gap=1.0)
    async with vad_server(VadSettings(min_silence_ms=1500)) as server:
        assert_events(await detect(server, pcm), [expected[0], expected[-1]])
    async with vad_server(VadSettings(min_speech_ms=5000)) as server:
        assert await detect(server, pcm) == []


async def test_speech_running_into_audio_stop_is_closed(server, speech: Speech) -> None:
    clip = speech.say(FIRST)
    start, _ = voiced(clip)
    events = await detect(server, silence(0.3) + clip[: len(clip) // 2])
    assert types(events) == ["voice-started", "voice-stopped"]
    assert abs(events[0].data["timestamp"] - (300 + start * 1000)) <= TOLERANCE_MS
    assert abs(events[1].data["timestamp"] - 300 - seconds(clip) * 500) <= TOLERANCE_MS


async def test_timestamps_follow_the_audio_start_timestamp(server, speech: Speech) -> None:
    pcm, expected = two_utterances(speech)
    async with connect(server) as client:
        await client.send(AudioStart(16000, 2, 1, timestamp=10_000).event())
        await client.send_audio(pcm, start=False)
        await client.send(Ping().event())
        events = [e for e in await client.receive_until("pong") if e.type != "pong"]
    assert_events(events, [(kind, ms + 10_000) for kind, ms in expected])


async def test_describe_answers_with_an_empty_info(server) -> None:
    async with connect(server) as client:
        await client.send(Describe().event())
        info = Info.from_event(await client.receive())
    assert (info.asr, info.tts, info.wake, info.handle) == ([], [], [], [])


async def test_bad_input_gets_an_error_and_the_server_keeps_serving(vad_server, speech: Speech) -> None:
    limits = FrameLimits(max_payload_bytes=64_000)
    async with vad_server(limits=limits) as server:
        async with connect(server) as client:
            # chunk before start: one error, the rest of that stream is dropped quietly
            await client.send(AudioChunk(16000, 2, 1, silence(0.1)).event())
            await client.send(AudioChunk(16000, 2, 1, silence(0.1)).event())
            await client.send(AudioStop().event())
            events = await client.receive_until("error")
            assert events[-1].data["code"] == "no-audio-start"
            # format change mid-stream
            await client.send(AudioStart(16000, 2, 1).event(), AudioChunk(16000, 2, 1, silence(0.1)).event())
            await client.send(AudioChunk(22050, 2, 1, silence(0.1, PcmFormat(22050))).event())
            await client.send(AudioStop().event())
            assert (await client.receive()).data["code"] == "format-mismatch"
            # impossible format, unknown event
            await client.send(Event("audio-start", {"rate": 16000, "width": 7, "channels": 1}))
            assert (await client.receive()).data["code"] == "bad-audio"
            await client.send(Event("transcribe", {"language": "en"}))
            assert (await client.receive()).data["code"] == "unexpected"
            # the same connection still works
            pcm, expected = two_utterances(speech)
            await client.send_audio(pcm)
            await client.send(Ping().event())
            assert_events([e for e in await client.receive_until("pong") if e.type != "pong"], expected)
        # garbage header and an oversized payload: error, then the server hangs up
        for raw in (b"this is not json\n", frame("audio-chunk", {"rate": 16000}, bytes(64_002))):
            async with connect(server) as client:
                client.writer.write(raw)
                await client.writer.drain()
                assert (await client.receive()).type == "error"
                assert await client.closed()
        assert_events(await detect(server, pcm), expected)


async def test_concurrent_streams_are_independent(server, speech: Speech) -> None:
    pcm, expected = two_utterances(speech)
    quiet = silence(seconds(pcm))
    results = await asyncio.gather(detect(server, pcm), detect(server, quiet), detect(server, pcm))
    assert_events(results[0], expected)
    assert results[1] == []
    assert_events(results[2], expected)


def test_stdio_subprocess_smoke(speech: Speech) -> None:
    from wyoming.event import read_event, write_event

    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "wyoming_persona", "vad", "--uri", "stdio://"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        pcm = silence(0.5) + speech.say(FIRST) + silence(0.8)
        write_event(Describe().event(), proc.stdin)
        write_event(AudioStart(16000, 2, 1).event(), proc.stdin)
        write_event(AudioChunk(16000, 2, 1, pcm).event(), proc.stdin)
        write_event(AudioStop().event(), proc.stdin)
        proc.stdin.flush()
        got = [read_event(proc.stdout) for _ in range(3)]
        assert types(got) == ["info", "voice-started", "voice-stopped"]
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("the stdio VAD server did not exit when stdin closed")
        proc.stdout.close()
        proc.stderr.close()
