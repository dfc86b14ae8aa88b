"""Speculative replies on the wire: the real ASR (tiny.en) posts its early transcript to the real persona
service over the speculation link; an in-test OpenAI-compatible server answers by echoing the question,
so a reply shows which words it was made for. A speculation is served only for the very words, persona
and history it was made for, and the speech it had synthesized ahead comes from the TTS's cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from asr.conftest import transcriber  # noqa: F401 (fixture)
from tts.conftest import cached_worker
from tts.test_speech_cache import streamed
from vad.helpers import PCM16K, connect, normalize, running
from wyoming.asr import Transcribe, Transcript
from wyoming.event import Event

from wyoming_persona.agent.backends import OpenAISettings
from wyoming_persona.agent.backends.openai import OpenAIChatBackend
from wyoming_persona.agent.chat import ChatSettings, PersonaChat
from wyoming_persona.agent.handler import PersonaEventHandler, build_info
from wyoming_persona.agent.history import ConversationStore
from wyoming_persona.agent.speculation import (
    AheadSpeech,
    PreemptingBackend,
    SpeculationGate,
    SpeculationSettings,
    Speculator,
)
from wyoming_persona.asr.handler import AsrEventHandler, AsrSettings
from wyoming_persona.asr.info import asr_info
from wyoming_persona.personas import PersonaManager
from wyoming_persona.speculate import Speculate, SpeculationLink
from wyoming_persona.tts.engine import TtsEngine
from wyoming_persona.tts.handler import TtsEventHandler
from wyoming_persona.tts.pool import VoicePool
from wyoming_persona.tts.speech_cache import SpeechCache
from wyoming_persona.tts.voices import VoiceCatalog
from wyoming_persona.wyoming_server import FrameLimits, ServiceServer

from .conftest import exchange, handled, say

WAIT = 60.0
QUESTION = "What is the capital of France?"


# -- an OpenAI-compatible server that echoes the question -----------------------------------------
@dataclass
class EchoLlm:
    """Answers "You asked about <the last user words>." word by word; `hold` keeps a reply waiting."""

    requests: list[dict] = field(default_factory=list)
    gone: list[int] = field(default_factory=list)
    """Requests whose client went away before the reply ended (a cancelled generation)."""
    hold: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    url: str = ""

    def __post_init__(self) -> None:
        self.hold.set()

    def questions(self) -> list[str]:
        return [normalize(r["messages"][-1]["content"]) for r in self.requests]

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(WAIT), self.arrived:
            await self.arrived.wait_for(lambda: len(self.requests) >= count)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        index = len(self.requests)
        async with self.arrived:
            self.requests.append(body)
            self.arrived.notify_all()
        question = normalize(body["messages"][-1]["content"])
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            await self.hold.wait()
            for word in f"You asked about {question}.".split(" "):
                chunk = {"choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
                await asyncio.sleep(0.01)
            end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            await response.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            self.gone.append(index)
            raise
        return response


@pytest.fixture
async def llm(aiohttp_server) -> AsyncIterator[EchoLlm]:
    fake = EchoLlm()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.completions)
    server = await aiohttp_server(app)
    fake.url = str(server.make_url("/v1"))
    yield fake
    fake.hold.set()


# -- the services ----------------------------------------------------------------------------------
@dataclass
class Persona:
    server: ServiceServer
    chat: PersonaChat
    speculator: Speculator

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port


@contextlib.asynccontextmanager
async def persona_service(
    manager: PersonaManager, llm: EchoLlm, tts_uri: str | None = None
) -> AsyncIterator[Persona]:
    raw = OpenAIChatBackend(OpenAISettings(base_url=llm.url, model="echo", max_tokens=64))
    gate = SpeculationGate()
    backend = PreemptingBackend(raw, gate)
    chat = PersonaChat(manager, backend, ConversationStore(), ChatSettings(timeout=30))
    ahead = AheadSpeech(tts_uri, timeout=30) if tts_uri else None
    speculator = Speculator(chat, gate, SpeculationSettings(tts_uri=tts_uri), ahead)
    info = functools.partial(build_info, manager, backend.name)
    factory = functools.partial(PersonaEventHandler, info=info, chat=chat, speculator=speculator)
    async with running(ServiceServer("tcp://127.0.0.1:0", factory)) as server:
        try:
            yield Persona(server, chat, speculator)
        finally:
            speculator.drop()
            await raw.close()


@contextlib.asynccontextmanager
async def asr_service(whisper, silero, link: SpeculationLink) -> AsyncIterator[ServiceServer]:
    settings = AsrSettings()
    factory = functools.partial(
        AsrEventHandler,
        info=lambda: asr_info(whisper),
        limits=FrameLimits(),
        transcriber=whisper,
        vad_model=silero,
        settings=settings,
        link=link,
    )
    async with running(ServiceServer("tcp://127.0.0.1:0", factory)) as server:
        yield server


async def until(condition, what: str) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 - polling state other tasks change
            await asyncio.sleep(0.02)


async def speak_and_wait(asr: ServiceServer, pcm: bytes, speculator: Speculator) -> str:
    """Stream the question and a second of silence, as Home Assistant does while its VAD waits; wait
    until the speculation has started (on the ASR's early decode); then audio-stop and the transcript."""
    async with connect(asr) as client:
        await client.send(Transcribe(language="en").event())
        await client.send_audio(pcm + bytes(PCM16K.bytes_per_second), stop=False)
        await until(lambda: speculator.current is not None, "the speculation")
        await client.send(Event("audio-stop"))
        events = await client.receive_until("transcript")
        return Transcript.from_event(events[-1]).text


@pytest.fixture
async def services(transcriber, silero, manager, llm):  # noqa: F811 (the fixture imported above)
    async with persona_service(manager, llm) as persona:
        link = SpeculationLink(f"tcp://127.0.0.1:{persona.port}")
        async with asr_service(transcriber, silero, link) as asr:
            yield persona, asr
        await link.close()


def reply_words(events: list[Event]) -> str:
    return normalize(handled(events).data["text"])


# -- tests -------------------------------------------------------------------------------------------
async def test_the_same_words_get_the_reply_started_on_the_early_transcript(services, llm, speech) -> None:
    persona, asr = services
    heard = await speak_and_wait(asr, speech.say(QUESTION), persona.speculator)
    assert normalize(heard) == "what is the capital of france"
    await llm.wait_for(1)  # the speculation asked the model before the client asked the agent
    events = await say(persona.port, heard, "conversation-1")
    assert "you asked about what is the capital of france" in reply_words(events)
    assert len(llm.requests) == 1  # served from the speculation: the model was not asked again
    assert persona.speculator.counts["adopted"] == 1
    # the turn is in that conversation's history: a follow-up is asked with it
    await say(persona.port, "And of Spain?", "conversation-1")
    follow_up = llm.requests[-1]["messages"]
    assert [m["content"] for m in follow_up if m["role"] == "user"][-2:] == [heard, "And of Spain?"]


async def test_other_words_are_never_served_what_was_made_for_the_early_ones(services, llm, speech) -> None:
    persona, asr = services
    await speak_and_wait(asr, speech.say(QUESTION), persona.speculator)
    await llm.wait_for(1)
    events = await say(persona.port, "What is the capital of Italy?", "conversation-2")
    words = reply_words(events)
    assert "italy" in words and "france" not in words
    assert llm.questions() == ["what is the capital of france", "what is the capital of italy"]
    assert persona.speculator.counts["adopted"] == 0


async def test_other_words_cancel_a_speculation_still_running_at_once(manager, llm) -> None:
    async with persona_service(manager, llm) as persona:
        llm.hold.clear()  # the speculation's reply does not come
        await persona.speculator.hear(QUESTION)
        await llm.wait_for(1)
        asking = asyncio.create_task(say(persona.port, "What is the capital of Italy?", "conversation-3"))
        await llm.wait_for(2)  # the real turn reached the model while the speculation was still held
        await until(lambda: 0 in llm.gone, "the speculation's request to be dropped")
        llm.hold.set()
        words = reply_words(await asking)
    assert "italy" in words and "france" not in words


async def test_a_speculation_made_on_another_history_is_not_served(manager, llm) -> None:
    async with persona_service(manager, llm) as persona:
        await say(persona.port, "My name is Ada.", "conversation-4")  # typed: no speculation
        await persona.speculator.hear(QUESTION)  # assumes a new conversation (no voice turn before)
        await llm.wait_for(2)
        events = await say(persona.port, QUESTION, "conversation-4")
        assert "france" in reply_words(events)
        assert len(llm.requests) == 3  # made again, with the conversation's own history
        users = [m["content"] for m in llm.requests[-1]["messages"] if m["role"] == "user"]
        assert users[-2:] == ["My name is Ada.", QUESTION]
        assert persona.speculator.counts["adopted"] == 0


async def test_words_taken_back_are_not_served_even_when_asked(manager, llm) -> None:
    """The user went on speaking: the ASR takes the early words back; a client asking with exactly those
    words later gets a reply made for its turn."""
    async with persona_service(manager, llm) as persona:
        async with connect(persona.server) as link:
            await link.send(Speculate("What is the capital").event())
            await llm.wait_for(1)
            await link.send(Speculate("").event())
            await until(lambda: persona.speculator.current is None, "the take-back")
        await say(persona.port, "What is the capital", "conversation-5")
        assert len(llm.requests) == 2 and persona.speculator.counts["adopted"] == 0


async def test_the_next_voice_turn_is_guessed_from_how_the_last_came(manager, llm) -> None:
    """A satellite keeps its conversation: the next speculation assumes its history and is served; a
    client that opens a new conversation every turn is seen doing so after one miss."""
    async with persona_service(manager, llm) as persona:
        speculator = persona.speculator
        for turn, (question, conversation) in enumerate(
            [("What is two and two?", "kitchen"), ("And three and three?", "kitchen")]
        ):
            await speculator.hear(question)
            await say(persona.port, question, conversation)
            assert speculator.counts["adopted"] == turn + 1
        assert len(llm.requests) == 2
        for question, conversation in [("Who wrote Hamlet?", "new-1"), ("Who wrote Faust?", "new-2")]:
            await speculator.hear(question)
            await say(persona.port, question, conversation)
        assert speculator.counts["adopted"] == 3  # "new-1" missed (it assumed the kitchen), "new-2" not


@contextlib.asynccontextmanager
async def tts_service(
    personas_dir: Path, state_dir: Path
) -> AsyncIterator[tuple[ServiceServer, SpeechCache]]:
    """Our TTS on the same personas and state as the agent, with its speech cache."""
    cache = SpeechCache()
    tts_manager = PersonaManager(personas_dir, state_dir)
    engine = TtsEngine(VoiceCatalog([]), tts_manager, VoicePool(2, cached_worker), speech_cache=cache)
    async with running(
        ServiceServer("tcp://127.0.0.1:0", functools.partial(TtsEventHandler, engine=engine))
    ) as tts:
        yield tts, cache


async def test_the_reply_is_spoken_ahead_while_written_and_replayed_when_home_assistant_asks(
    manager, llm, personas_dir, state_dir
) -> None:
    """Its text streams into the TTS as the model writes it; Home Assistant's synthesize of the handled
    text (one chunk, the pipeline's voice) is then replayed from the speech cache, byte for byte."""
    async with (
        tts_service(personas_dir, state_dir) as (tts, cache),
        persona_service(manager, llm, f"tcp://127.0.0.1:{tts.port}") as persona,
    ):
        await persona.speculator.hear(QUESTION)
        speculation = persona.speculator.current
        events = await say(persona.port, QUESTION, "conversation-6")
        spoken = next(e for e in events if e.type == "handled").data["text"]
        assert speculation.text_sent.is_set()  # before `handled` went out
        first = await streamed(tts.port, [spoken], "active")
        assert cache.hits == 1
        assert first == await streamed(tts.port, [spoken], None) and cache.hits == 2
        await speculation.speech
        assert speculation.speech.result() is True


async def test_a_client_that_speaks_the_chunks_itself_stops_the_speech_ahead(
    manager, llm, personas_dir, state_dir
) -> None:
    """Our `talk` synthesizes the handled-chunks itself: speech ahead would only take the TTS from it."""
    async with (
        tts_service(personas_dir, state_dir) as (tts, _),
        persona_service(manager, llm, f"tcp://127.0.0.1:{tts.port}") as persona,
    ):
        llm.hold.clear()
        await persona.speculator.hear(QUESTION)
        speculation = persona.speculator.current
        context = {"conversation_id": "conversation-7", "speaks_chunks": True}
        asking = asyncio.create_task(exchange(persona.port, Transcript(QUESTION, context=context).event()))
        await until(lambda: speculation.claimed, "the claim")
        llm.hold.set()
        assert "france" in reply_words(await asking)
        await asyncio.gather(speculation.speech, return_exceptions=True)
        assert speculation.speech.cancelled()


async def test_the_link_to_a_persona_service_that_is_not_there_changes_nothing(
    transcriber,  # noqa: F811
    silero,
    speech,
    caplog,
) -> None:
    link = SpeculationLink("tcp://127.0.0.1:9", timeout=1.0)  # discard port: nothing listens
    async with asr_service(transcriber, silero, link) as asr, connect(asr) as client:
        await client.send(Transcribe(language="en").event())
        await client.send_audio(speech.say(QUESTION) + bytes(PCM16K.bytes_per_second), stop=False)
        await until(lambda: any("Speculation link" in r.message for r in caplog.records), "the warning")
        await client.send(Event("audio-stop"))
        events = await client.receive_until("transcript")
    assert normalize(Transcript.from_event(events[-1]).text) == "what is the capital of france"
    assert link.sent == 0
    await link.close()


async def test_a_bad_speculate_event_is_an_error_and_the_connection_stays(services) -> None:
    persona, _ = services
    async with connect(persona.server) as client:
        await client.send(Event("speculate", {"text": 7}))
        error = await client.receive_until("error")
        assert "must be a string" in error[-1].data["text"]
        await client.send(Event("describe"))
        assert (await client.receive_until("info"))[-1].type == "info"


def test_the_persona_service_refuses_a_bad_tts_uri() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "wyoming_persona", "persona", "--speculation-tts-uri", "http://x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and re.search(r"--speculation-tts-uri 'http://x'", done.stderr)


# -- home control: recognised ahead, run only when Home Assistant asks ---------------------------------
@contextlib.asynccontextmanager
async def home_persona(manager: PersonaManager, llm: EchoLlm, ha_websocket) -> AsyncIterator[Persona]:
    from wyoming_persona.home.control import HomeControl
    from wyoming_persona.home.link import HomeLink, HomeLinkSettings
    from wyoming_persona.home.recognizer import IntentRecognizer

    home = HomeControl(
        HomeLink(HomeLinkSettings(ha_websocket.url, "test-token", timeout=5)), IntentRecognizer()
    )
    async with persona_service(manager, llm) as persona, home.running():
        persona.chat.home = home
        async with asyncio.timeout(10):
            await home.link.connected.wait()
        yield persona


async def test_a_home_command_is_recognised_ahead_and_run_only_when_asked(manager, llm, ha_websocket) -> None:
    manager.set_active("butler")
    async with home_persona(manager, llm, ha_websocket) as persona:
        await persona.speculator.hear("Turn off the kitchen light.")
        await until(lambda: persona.speculator.current.finished, "the speculation")
        assert "call_service" not in ha_websocket.commands  # nothing is run ahead (HA runs intents)
        events = await say(persona.port, "Turn off the kitchen light.", "sat-1")
    assert [e.type for e in events] == ["intent"]
    assert events[0].data["name"] == "HassTurnOff" and persona.speculator.counts["adopted"] == 1
    assert llm.requests == []


async def test_a_question_back_asked_ahead_waits_for_its_yes_in_the_conversation_that_asked(
    manager, llm, ha_websocket
) -> None:
    manager.set_active("butler")
    async with home_persona(manager, llm, ha_websocket) as persona:
        speculator = persona.speculator
        await speculator.hear("Close the garage gate.")
        question = handled(await say(persona.port, "Close the garage gate.", "sat-2")).data["text"]
        assert question == "If I may ask first, shall I close the garage door?"
        assert speculator.counts["adopted"] == 1
        # a "yes" heard early is not served while that question waits: the real turn takes the yes
        await speculator.hear("Yes, please.")
        done = await say(persona.port, "Yes, please.", "sat-2")
        assert [e.type for e in done] == ["intent"] and done[0].data["name"] == "HassTurnOff"
        assert speculator.counts["adopted"] == 1
        assert await say(persona.port, "Yes, please.", "sat-2") != done  # asked once, done once
