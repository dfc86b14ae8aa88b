"""Faults while serving (issue: "Never fail silently"): clients vanishing at every stage of a request,
an LLM backend dying in the middle of a reply, persona files broken and the shared state file deleted
or corrupted while requests are answered. Real models and sockets; the only fake is Ollama, speaking
its wire format (HTTP/1.1 chunked NDJSON) on a raw socket so that it can die mid-body."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import shutil
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
from vad.helpers import Speech, normalize
from wyoming.asr import Transcribe, Transcript
from wyoming.event import Event, async_read_event, async_write_event
from wyoming.info import Describe
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeVoice

from wyoming_persona.agent.backends import OllamaSettings
from wyoming_persona.agent.backends.ollama import OllamaChatBackend
from wyoming_persona.agent.chat import ChatSettings, PersonaChat
from wyoming_persona.agent.handler import PersonaEventHandler, build_info
from wyoming_persona.agent.history import ConversationStore
from wyoming_persona.agent.shaping import speakable_piece
from wyoming_persona.asr.handler import AsrEventHandler, AsrSettings
from wyoming_persona.asr.info import asr_info
from wyoming_persona.audio import AudioChunk, AudioStart, AudioStop, PcmFormat, pcm_chunks, silence
from wyoming_persona.personas import PersonaManager, build_system_prompt
from wyoming_persona.speakable import persona_mark
from wyoming_persona.tts.engine import NoiseSettings, TtsEngine
from wyoming_persona.tts.handler import ResponseSettings, TtsEventHandler
from wyoming_persona.tts.pool import VoicePool
from wyoming_persona.tts.voices import VoiceCatalog
from wyoming_persona.vad.handler import VadEventHandler, vad_info
from wyoming_persona.vad.segmenter import VadSettings
from wyoming_persona.wyoming_server import FrameLimits, ServiceServer

from .conftest import DyingOllama

pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60
PCM16K = PcmFormat()
KITCHEN = "Turn on the kitchen light."
END_OF_REPLY = ("handled-stop", "not-handled", "error")


# -- connections -----------------------------------------------------------------------------------
class Conn:
    """One client connection with a timeout on every read."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        async with asyncio.timeout(10):
            return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, *events: Event) -> None:
        for event in events:
            await async_write_event(event, self.writer)

    async def audio(self, pcm: bytes, start: bool = True, stop: bool = True) -> None:
        if start:
            await self.send(AudioStart(16000, 2, 1, timestamp=0).event())
        for chunk in pcm_chunks(pcm, PCM16K, 64):
            await self.send(AudioChunk(16000, 2, 1, chunk).event())
        if stop:
            await self.send(AudioStop().event())

    async def read_until(self, *types: str) -> list[Event]:
        """Events up to the first of `types` (fails on close, on `error` and after TIMEOUT)."""
        events: list[Event] = []
        async with asyncio.timeout(TIMEOUT):
            while True:
                event = await async_read_event(self.reader)
                assert event is not None, f"closed before {types}; got {[e.type for e in events]}"
                events.append(event)
                assert event.type != "error" or "error" in types, event.data
                if event.type in types:
                    return events

    def vanish(self) -> None:
        """The client dies: the connection is reset, nothing is said."""
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(10):
                await self.writer.wait_closed()


async def handlers_finished(server: ServiceServer) -> None:
    """Wait until every connection handler of `server` has ended (a stuck handler fails the test)."""
    async with asyncio.timeout(TIMEOUT):
        while server._tasks:  # the server's own record of live connection tasks
            await asyncio.wait(set(server._tasks))


def no_errors_logged(records: Iterable[logging.LogRecord]) -> None:
    errors = [f"{r.name}: {r.getMessage()}" for r in records if r.levelno >= logging.ERROR]
    assert errors == [], errors


@contextlib.asynccontextmanager
async def serving(factory) -> AsyncIterator[ServiceServer]:
    server = ServiceServer("tcp://127.0.0.1:0", factory)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def refreshed(*managers: PersonaManager) -> None:
    """What each service's watcher does every interval, done now so the test's order is certain."""
    for manager in managers:
        await asyncio.to_thread(manager.refresh)


def personas_copy(folder: Path) -> Path:
    shutil.copytree(REPO / "config" / "personas", folder)
    return folder


# == clients that vanish ===========================================================================
ASR_STAGES = ["after-transcribe", "after-audio-start", "mid-chunks", "before-audio-stop"]


@pytest.mark.parametrize("stage", ASR_STAGES)
async def test_asr_client_vanishing_at_any_stage_leaves_the_server_serving(
    whisper, silero, speech: Speech, stage: str, caplog
) -> None:
    info = asr_info(whisper, endpointing=False)
    factory = functools.partial(
        AsrEventHandler,
        info=lambda: info,
        limits=FrameLimits(),
        transcriber=whisper,
        vad_model=silero,
        settings=AsrSettings(),
    )
    utterance = silence(0.3) + speech.say(KITCHEN) + silence(0.8)
    async with serving(factory) as server:
        gone = await Conn.open(server.port)
        await gone.send(Transcribe(language="en").event())
        if stage != "after-transcribe":
            await gone.send(AudioStart(16000, 2, 1, timestamp=0).event())
        if stage in ("mid-chunks", "before-audio-stop"):
            part = utterance if stage == "before-audio-stop" else utterance[: len(utterance) // 2]
            await gone.audio(part, start=False, stop=False)
        await gone.send(Describe().event())  # everything above has been read once this is answered
        await gone.read_until("info")
        gone.vanish()
        await handlers_finished(server)

        client = await Conn.open(server.port)
        await client.send(Transcribe(language="en").event())
        await client.audio(utterance)
        events = await client.read_until("transcript-stop")
        await client.close()
    transcript = next(e for e in events if e.type == "transcript")
    assert normalize(transcript.data["text"]) == "turn on the kitchen light"
    no_errors_logged(caplog.records)


async def test_vad_client_vanishing_mid_audio_leaves_the_server_serving(
    silero, speech: Speech, caplog
) -> None:
    factory = functools.partial(
        VadEventHandler, info=vad_info, limits=FrameLimits(), model=silero, settings=VadSettings()
    )
    utterance = silence(0.5) + speech.say(KITCHEN) + silence(1.0)
    async with serving(factory) as server:
        gone = await Conn.open(server.port)
        await gone.audio(utterance[: len(utterance) // 2], stop=False)
        await gone.read_until("voice-started")  # mid-utterance, with the detector running
        gone.vanish()
        await handlers_finished(server)

        client = await Conn.open(server.port)
        await client.audio(utterance)
        events = await client.read_until("voice-stopped")
        await client.close()
    assert [e.type for e in events] == ["voice-started", "voice-stopped"]
    no_errors_logged(caplog.records)


@pytest.fixture
def personas(tmp_path: Path) -> Path:
    """The shipped personas, safe to break; every service of a test shares them and `state_dir`."""
    return personas_copy(tmp_path / "personas")


@pytest.fixture
async def tts_server(
    personas: Path, state_dir: Path, piper_workers
) -> AsyncIterator[tuple[ServiceServer, PersonaManager]]:
    manager = PersonaManager(personas, state_dir, refresh_interval=0.0)
    pool = VoicePool(2, worker_factory=piper_workers)
    engine = TtsEngine(VoiceCatalog(), manager, pool, NoiseSettings(0.0, 0.0))
    factory = functools.partial(TtsEventHandler, engine=engine, settings=ResponseSettings())
    async with manager.watching(), serving(factory) as server:  # as `tts/cli.py` runs it
        yield server, manager


LONG_TEXT = " ".join(f"This is sentence number {i}, spoken slowly by the pirate." for i in range(12))


@pytest.mark.parametrize("stage", ["mid-synthesis", "mid-chunk-stream"])
async def test_tts_client_vanishing_mid_response_leaves_the_server_serving(tts_server, stage, caplog) -> None:
    server, _ = tts_server
    voice = SynthesizeVoice(name="pirate")
    gone = await Conn.open(server.port)
    if stage == "mid-synthesis":
        await gone.send(Synthesize(text=LONG_TEXT, voice=voice).event())
    else:
        await gone.send(SynthesizeStart(voice=voice).event())
        await gone.send(SynthesizeChunk(text=LONG_TEXT[:150]).event())  # no synthesize-stop ever comes
    await gone.read_until("audio-chunk")
    gone.vanish()
    await handlers_finished(server)

    client = await Conn.open(server.port)
    await client.send(SynthesizeStart(voice=voice).event(), SynthesizeChunk(text="Ahoy there. All").event())
    await client.send(SynthesizeChunk(text=" hands on deck!").event(), SynthesizeStop().event())
    events = await client.read_until("synthesize-stopped")
    await client.close()
    assert [e.type for e in events].count("audio-stop") == 2
    assert sum(len(e.payload or b"") for e in events if e.type == "audio-chunk") > 22050  # > 0.5 s
    no_errors_logged(caplog.records)


# == the persona agent: vanishing clients and a dying backend =======================================
@pytest.fixture
async def agent(
    personas: Path, state_dir: Path, dying_ollama: DyingOllama
) -> AsyncIterator[tuple[ServiceServer, PersonaManager, DyingOllama]]:
    manager = PersonaManager(personas, state_dir, refresh_interval=0.0)
    backend = OllamaChatBackend(OllamaSettings(host=dying_ollama.url, model="llama3.2", timeout=30))
    chat = PersonaChat(manager, backend, ConversationStore(), ChatSettings(timeout=30))
    info = functools.partial(build_info, manager, backend.name)
    factory = functools.partial(PersonaEventHandler, info=info, chat=chat)
    async with manager.watching(), serving(factory) as server:  # as `agent/cli.py` runs it
        yield server, manager, dying_ollama
    await backend.close()


async def say(port: int, text: str, conversation_id: str = "faults") -> list[Event]:
    client = await Conn.open(port)
    try:
        await client.send(Transcript(text=text, context={"conversation_id": conversation_id}).event())
        return await client.read_until(*END_OF_REPLY)
    finally:
        await client.close()


def handled(events: list[Event]) -> Event:
    """The `handled` event, its text as heard (without the persona mark in front)."""
    types = [e.type for e in events]
    assert types[0] == "handled-start" and types[-2:] == ["handled", "handled-stop"], types
    data = events[-2].data
    mark = persona_mark(data["context"]["persona_id"])
    assert data["text"].startswith(mark)
    return Event(events[-2].type, {**data, "text": data["text"][len(mark) :]})


async def test_agent_client_vanishing_mid_reply_stops_the_backend_and_serves_the_next(agent, caplog) -> None:
    server, _, ollama = agent
    ollama.mode = "endless"
    gone = await Conn.open(server.port)
    await gone.send(Transcript(text="Tell me about the sea", context={"conversation_id": "gone"}).event())
    events = await gone.read_until("handled-chunk")
    assert events[-1].data["text"] == "Ahoy matey!"
    gone.vanish()
    await handlers_finished(server)
    async with asyncio.timeout(TIMEOUT):
        await ollama.client_gone.wait()  # the generation was abandoned, not left streaming

    ollama.mode = "ok"
    reply = handled(await say(server.port, "And now?"))
    assert reply.data["text"] == "Ahoy matey! The sea is calm today."
    no_errors_logged(caplog.records)


ROUGH_SEA = ["The sea", " be rough", " today. Arr,", " the wind", " be wild."]


@pytest.mark.parametrize(
    ("die_after", "spoken"),
    [
        (2, None),  # nothing complete was said yet: the persona's fallback line
        (4, "The sea be rough today."),  # a sentence was already spoken: the reply ends there
    ],
)
async def test_backend_dying_mid_reply_gives_the_persona_fallback(agent, die_after, spoken, caplog) -> None:
    server, manager, ollama = agent
    manager.set_active("pirate")
    ollama.reply, ollama.mode, ollama.die_after = ROUGH_SEA, "die", die_after
    events = await say(server.port, "How is the sea?")
    reply = handled(events)
    fallback = speakable_piece(manager.get("pirate").spec.fallbacks.backend_down)
    assert reply.data["text"] == (spoken or fallback)
    assert reply.data["context"]["persona_id"] == "pirate"
    chunks = "".join(e.data["text"] for e in events if e.type == "handled-chunk")
    assert chunks == reply.data["text"], "what is spoken is what the reply says"
    assert "answering with the persona's fallback line" in caplog.text  # never silent

    ollama.mode = "ok"
    again = handled(await say(server.port, "And now?", "next"))
    assert again.data["text"] == "".join(ROUGH_SEA)
    no_errors_logged(caplog.records)


# == broken personas and state while serving =======================================================
async def test_broken_persona_file_keeps_the_last_good_personas(agent, caplog) -> None:
    server, manager, ollama = agent
    manager.set_active("pirate")
    pirate = manager.get("pirate")
    path = manager.personas_dir / "pirate.yaml"
    good = path.read_text()

    ollama.mode = "hang"
    in_flight = asyncio.create_task(say(server.port, "Before the break", "a"))
    async with asyncio.timeout(TIMEOUT):
        await ollama.received.wait()
    path.write_text(good.replace("name:", "name: [unclosed", 1))  # invalid YAML
    await refreshed(manager)
    ollama.mode = "ok"
    ollama.release.set()
    during = await asyncio.gather(*(say(server.port, f"While broken {i}", f"b{i}") for i in range(3)))
    before = await in_flight

    for events in (before, *during):
        assert handled(events).data["context"]["persona_id"] == "pirate"
    prompts = {body["messages"][0]["content"] for body in ollama.requests}
    assert prompts == {build_system_prompt(pirate)}, "every request used the last good pirate"
    assert [e.path.name for e in manager.last_errors] == ["pirate.yaml"]
    assert "keeping the last good set" in caplog.text

    client = await Conn.open(server.port)
    await client.send(Describe().event())
    info = (await client.read_until("info"))[-1]
    await client.close()
    assert {m["name"] for m in info.data["handle"][0]["models"]} == set(manager.personas) >= {"pirate"}

    path.write_text(good.replace("identity: ", "identity: A reformed pirate. ", 1))  # fixed again
    await refreshed(manager)
    handled(await say(server.port, "After the fix", "c"))
    assert "A reformed pirate." in ollama.requests[-1]["messages"][0]["content"]
    assert manager.last_errors == ()
    no_errors_logged(caplog.records)


async def test_deleted_or_corrupt_state_file_falls_back_to_the_default_persona(
    agent, tts_server, caplog
) -> None:
    server, manager, ollama = agent
    tts, tts_manager = tts_server
    state = manager.store.path
    caplog.set_level(logging.WARNING, logger="wyoming_persona.personas")

    switched = handled(await say(server.port, "Switch to the pirate", "s"))
    assert switched.data["context"]["persona_id"] == "pirate"
    assert json.loads(state.read_text())["active"] == "pirate"

    damages = {
        "deleted": (lambda: state.unlink(), "no state file"),
        "corrupt": (lambda: state.write_bytes(b"\x00{not json"), "corrupt state file"),
        "wrong shape": (lambda: state.write_text("[1, 2]"), "has no 'active' persona id"),
        "unknown persona": (lambda: state.write_text('{"active": "ghost"}'), "'ghost' is not in"),
    }
    for name, (damage, warning) in damages.items():
        caplog.clear()
        damage()
        await refreshed(manager, tts_manager)
        reply = handled(await say(server.port, f"Who is there after {name}?", name))
        assert reply.data["context"]["persona_id"] == "assistant", name
        assert warning in caplog.text and "using the default persona 'assistant'" in caplog.text, name
        assert build_system_prompt(manager.get("assistant")) == ollama.requests[-1]["messages"][0]["content"]
        await speak_with_the_active_voice(tts.port)  # the TTS server reads the same broken state

    switched = handled(await say(server.port, "Switch to the butler", "s2"))
    assert switched.data["context"]["persona_id"] == "butler"
    assert json.loads(state.read_text())["active"] == "butler"
    assert handled(await say(server.port, "Good evening", "s3")).data["context"]["persona_id"] == "butler"
    no_errors_logged(caplog.records)


async def speak_with_the_active_voice(port: int) -> None:
    client = await Conn.open(port)
    await client.send(Synthesize(text="Hello there.").event())
    events = await client.read_until("audio-stop")
    await client.close()
    assert any(e.type == "audio-chunk" and e.payload for e in events)
