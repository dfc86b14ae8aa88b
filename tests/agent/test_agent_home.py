"""Home control on the Wyoming wire: a command is one `intent` event in the persona's words, a
question or a missing device is a spoken answer, chat stays chat, and a room's persona answers there."""

from __future__ import annotations

import asyncio
import contextlib
import functools

from wyoming.event import async_read_event, async_write_event
from wyoming.info import Describe, Info
from wyoming.intent import Intent

from wyoming_persona.agent.backends import OllamaSettings
from wyoming_persona.agent.backends.ollama import OllamaChatBackend
from wyoming_persona.agent.chat import ChatSettings, PersonaChat
from wyoming_persona.agent.handler import PersonaEventHandler, build_info
from wyoming_persona.agent.history import ConversationStore
from wyoming_persona.home.control import HomeControl
from wyoming_persona.home.link import HomeLink, HomeLinkSettings
from wyoming_persona.home.recognizer import IntentRecognizer
from wyoming_persona.speakable import strip_emoji
from wyoming_persona.wyoming_server import ServiceServer

from .conftest import assert_stream_order, exchange, handled, say


@contextlib.asynccontextmanager
async def home_server(manager, fake_ollama, ha_websocket, device_personas=None):
    backend = OllamaChatBackend(OllamaSettings(host=fake_ollama.url))
    home = HomeControl(
        HomeLink(HomeLinkSettings(ha_websocket.url, "test-token", timeout=5)), IntentRecognizer()
    )
    chat = PersonaChat(manager, backend, ConversationStore(), ChatSettings(timeout=30), home, device_personas)
    info = functools.partial(build_info, manager, backend.name, True)
    server = ServiceServer("tcp://127.0.0.1:0", functools.partial(PersonaEventHandler, info=info, chat=chat))
    await server.start()
    try:
        async with home.running():
            async with asyncio.timeout(10):
                await home.link.connected.wait()
            yield server
    finally:
        await server.close()
        await backend.close()


async def test_a_command_is_one_intent_event_in_the_personas_words(manager, fake_ollama, ha_websocket):
    manager.set_active("pirate")
    async with home_server(manager, fake_ollama, ha_websocket) as server:
        events = await say(server.port, "Turn off the kitchen light.", "c1")
        manager.set_active("butler")
        butler = await say(server.port, "Turn off the kitchen light.", "c2")
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            await async_write_event(Describe().event(), writer)
            info = Info.from_event(await async_read_event(reader))
            writer.close()
    assert [e.type for e in events] == ["intent"]  # no handled-start: HA reads the intent first
    intent = Intent.from_event(events[0])
    assert intent.name == "HassTurnOff"
    assert [(e.name, e.value) for e in intent.entities] == [("name", "Kitchen Light")]
    assert "kitchen light" in intent.text and any(w in intent.text for w in ("matey", "Arr", "Aye"))
    assert intent.context["conversation_id"] == "c1" and intent.context["persona_id"] == "pirate"
    butler_text = Intent.from_event(butler[0]).text
    assert "kitchen light" in butler_text and butler_text != intent.text
    assert info.handle[0].supports_home_control
    assert fake_ollama.requests == []  # the LLM is not asked


async def test_questions_and_missing_devices_are_answered_in_character(manager, fake_ollama, ha_websocket):
    manager.set_active("robot")
    async with home_server(manager, fake_ollama, ha_websocket) as server:
        outside = await say(server.port, "What is the outdoor temperature?", "c")
        await ha_websocket.change_state("cover.garage_door", "open", current_position=100)
        await asyncio.sleep(0.2)  # the state_changed event reaches the link
        garage = await say(server.port, "Is the garage door open?", "c")
        missing = await say(server.port, "Turn on the hallway fan", "c")
    for events in (outside, garage, missing):
        assert_stream_order(events)
    assert handled(outside).data["text"] == "Status report. The outdoor temperature is 12.5 degrees."
    assert handled(garage).data["text"] == "Status report. The garage door is open."
    assert handled(missing).data["text"] == "Error. No device named hallway fan found."
    assert fake_ollama.requests == []


async def test_chat_still_goes_to_the_llm_and_remembers_the_command(manager, fake_ollama, ha_websocket):
    manager.set_active("pirate")
    async with home_server(manager, fake_ollama, ha_websocket) as server:
        await say(server.port, "Switch on the coffee machine please", "c")
        chat = await say(server.port, "How does a thermostat work?", "c")
    assert_stream_order(chat)
    [request] = fake_ollama.requests
    turns = [(m["role"], m["content"]) for m in request["messages"][-3:]]
    assert turns[0] == ("user", "Switch on the coffee machine please")
    assert turns[1][0] == "assistant" and "coffee machine" in turns[1][1]
    assert turns[2] == ("user", "How does a thermostat work?")


async def test_a_rooms_satellite_gets_its_own_persona(manager, fake_ollama, ha_websocket):
    from wyoming.asr import Transcript

    manager.set_active("butler")
    rooms = {"kids-room-satellite": "pirate"}
    async with home_server(manager, fake_ollama, ha_websocket, rooms) as server:
        context = {"conversation_id": "k", "satellite_id": "kids-room-satellite"}
        kids = await exchange(server.port, Transcript("turn on the bedroom light", context=context).event())
        kitchen = await say(server.port, "turn on the bedroom light", "k2")
    assert Intent.from_event(kids[0]).context["persona_id"] == "pirate"
    assert Intent.from_event(kitchen[0]).context["persona_id"] == "butler"
    assert manager.active().id == "butler"  # the room's persona does not switch the house's


async def test_the_same_words_from_two_personas_are_different_texts_for_has_tts_cache(
    manager, fake_ollama, ha_websocket
):
    """HA caches speech by text and options; with the voice `active` only the text can tell personas apart."""
    texts = {}
    async with home_server(manager, fake_ollama, ha_websocket) as server:
        for persona in ("pirate", "robot"):
            manager.set_active(persona)
            texts[persona] = (await say(server.port, "How are you?", persona))[-2].data["text"]
    assert texts["pirate"] != texts["robot"]
    assert strip_emoji(texts["pirate"]) == strip_emoji(texts["robot"]) == "Ahoy matey! The sea is calm today."
