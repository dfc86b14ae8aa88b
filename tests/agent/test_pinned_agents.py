"""Pinned agents (`persona --pinned-persona butler=PORT`): more Wyoming handle endpoints, each always one
persona, with its own name in Info, its own history, home control, and no persona switch through it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import subprocess
import sys
from pathlib import Path

import pytest
from wyoming.event import async_read_event, async_write_event
from wyoming.info import Describe, Info
from wyoming.intent import Intent

from wyoming_persona.agent.backends import OllamaSettings
from wyoming_persona.agent.backends.ollama import OllamaChatBackend
from wyoming_persona.agent.chat import ChatSettings, PersonaChat
from wyoming_persona.agent.handler import ANSWER_AS, PersonaEventHandler, build_info
from wyoming_persona.agent.history import ConversationStore
from wyoming_persona.agent.pinned import (
    PinnedAgent,
    PinnedError,
    build_pinned_info,
    parse_pinned,
    serving_pinned,
)
from wyoming_persona.home.control import HomeControl
from wyoming_persona.home.link import HomeLink, HomeLinkSettings
from wyoming_persona.home.recognizer import IntentRecognizer
from wyoming_persona.service_metrics import ServiceMetrics
from wyoming_persona.wyoming_server import ServiceServer

from .conftest import exchange, handled, say


@contextlib.asynccontextmanager
async def agents(manager, fake_ollama, pins=("butler", "pirate"), home=None):
    """The main agent and one pinned agent per persona in `pins`, sharing one PersonaChat."""
    backend = OllamaChatBackend(OllamaSettings(host=fake_ollama.url))
    chat = PersonaChat(manager, backend, ConversationStore(), ChatSettings(timeout=30), home)
    info = functools.partial(build_info, manager, backend.name, home is not None)
    main = ServiceServer("tcp://127.0.0.1:0", functools.partial(PersonaEventHandler, info=info, chat=chat))
    await main.start()
    pinned_info = functools.partial(build_pinned_info, manager, backend.name, home is not None)
    wanted = [PinnedAgent(persona_id, "tcp://127.0.0.1:0") for persona_id in pins]
    try:
        async with serving_pinned(wanted, chat, pinned_info, ServiceMetrics("persona")) as servers:
            yield (
                main.port,
                {pin.persona_id: server.port for pin, server in zip(wanted, servers, strict=True)},
            )
    finally:
        await main.close()
        await backend.close()


async def describe(port: int) -> Info:
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            await async_write_event(Describe().event(), writer)
            return Info.from_event(await async_read_event(reader))
        finally:
            writer.close()


def system_prompt(request: dict) -> str:
    return request["messages"][0]["content"]


def user_texts(request: dict) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] in ("user", "assistant")]


async def test_each_pinned_agent_is_its_own_agent_in_home_assistant(manager, fake_ollama):
    async with agents(manager, fake_ollama) as (main, pinned):
        butler, pirate, active = (
            await describe(pinned["butler"]),
            await describe(pinned["pirate"]),
            await describe(main),
        )
    # HA names a Wyoming agent (and its config entry) after the first handle program.
    assert butler.handle[0].name == "Jeeves (wyoming-persona)"
    assert pirate.handle[0].name == "Captain Barnacle (wyoming-persona)"
    assert active.handle[0].name == "wyoming-persona"
    assert [m.name for m in butler.handle[0].models] == ["butler"]
    assert butler.handle[0].models[0].languages == ["en"]
    assert butler.handle[0].supports_handled_streaming


async def test_a_pinned_agent_answers_as_its_persona_whatever_is_active(manager, fake_ollama):
    manager.set_active("pirate")
    async with agents(manager, fake_ollama) as (main, pinned):
        first = handled(await say(pinned["butler"], "Hello there.", "c1"))
        manager.set_active("robot")  # a switch elsewhere (voice, API, MQTT) does not move it
        second = handled(await say(pinned["butler"], "Hello again.", "c1"))
        from_main = handled(await say(main, "Hello.", "c2"))
    assert first.data["context"]["persona_id"] == second.data["context"]["persona_id"] == "butler"
    assert from_main.data["context"]["persona_id"] == "robot"
    assert "Jeeves" in system_prompt(fake_ollama.requests[0])
    assert "Jeeves" in system_prompt(fake_ollama.requests[1])
    assert "Unit Seven" in system_prompt(fake_ollama.requests[2])


async def test_a_switch_through_a_pinned_agent_is_answered_in_character_and_not_made(manager, fake_ollama):
    manager.set_active("pirate")
    async with agents(manager, fake_ollama) as (main, pinned):
        refused = handled(await say(pinned["butler"], "Switch to the robot.", "c1"))
        still = handled(await say(pinned["butler"], "Who are you?", "c1"))
        switched = handled(await say(main, "Switch to the robot.", "c2"))
    assert refused.data["text"] == "This agent always answers as Jeeves."
    assert refused.data["context"]["persona_id"] == "butler"
    assert "Jeeves" in still.data["text"]
    assert switched.data["context"]["persona_id"] == "robot"  # the main agent still switches
    assert manager.active().id == "robot"
    assert fake_ollama.requests == []  # commands never reach the LLM


async def test_two_personas_never_share_a_history_even_in_one_conversation(manager, fake_ollama):
    """HA gives each pipeline run its own conversation id, but a client may reuse one: the butler must
    not recall what the user told the pirate, and each keeps its own."""
    manager.set_active("robot")
    async with agents(manager, fake_ollama) as (main, pinned):
        await say(pinned["pirate"], "My name is Ada.", "shared")
        await say(pinned["butler"], "My favourite colour is green.", "shared")
        await say(pinned["pirate"], "What is my name?", "shared")
        await say(pinned["butler"], "What is my favourite colour?", "shared")
        await say(main, "What do you know about me?", "shared")
    pirate_asks, butler_asks, robot_asks = (
        fake_ollama.requests[2],
        fake_ollama.requests[3],
        fake_ollama.requests[4],
    )
    assert "Captain Barnacle" in system_prompt(pirate_asks)
    assert "My name is Ada." in user_texts(pirate_asks)
    assert not any("green" in text for text in user_texts(pirate_asks))
    assert "Jeeves" in system_prompt(butler_asks)
    assert "My favourite colour is green." in user_texts(butler_asks)
    assert not any("Ada" in text for text in user_texts(butler_asks))
    assert not any("Ada" in text or "green" in text for text in user_texts(robot_asks))


async def test_the_studio_chat_answers_as_a_given_persona_without_switching(manager, fake_ollama):
    manager.set_active("pirate")
    async with agents(manager, fake_ollama, pins=()) as (main, _):
        context = {"conversation_id": "studio", ANSWER_AS: "coach"}
        from wyoming.asr import Transcript

        reply = handled(await exchange(main, Transcript("Hi!", context=context).event()))
        refused = handled(await exchange(main, Transcript("Switch to the butler.", context=context).event()))
        gone = await exchange(main, Transcript("Hi!", context={ANSWER_AS: "nobody"}).event())
        bad = await exchange(main, Transcript("Hi!", context={ANSWER_AS: 7}).event())
    assert reply.data["context"]["persona_id"] == "coach"
    assert "Coach Sunny" in system_prompt(fake_ollama.requests[0])
    assert refused.data["text"] == "This agent always answers as Coach Sunny."
    assert manager.active().id == "pirate"
    assert [e.type for e in gone] == ["error"] and "nobody" in gone[0].data["text"]
    assert [e.type for e in bad] == ["error"] and ANSWER_AS in bad[0].data["text"]


async def test_a_pinned_persona_that_was_deleted_gets_an_error_not_another_persona(
    manager, fake_ollama, personas_dir: Path
):
    async with agents(manager, fake_ollama, pins=("coach",)) as (_, pinned):
        (personas_dir / "coach.yaml").unlink()
        manager.reload()
        events = await say(pinned["coach"], "Hello?", "c")
        info = await describe(pinned["coach"])
    assert [e.type for e in events] == ["error"]
    assert "coach" in events[0].data["text"]
    assert fake_ollama.requests == []
    assert not info.handle[0].models[0].installed


async def test_home_control_through_a_pinned_agent(manager, fake_ollama, ha_websocket):
    manager.set_active("pirate")
    home = HomeControl(
        HomeLink(HomeLinkSettings(ha_websocket.url, "test-token", timeout=5)), IntentRecognizer()
    )
    async with agents(manager, fake_ollama, pins=("butler",), home=home) as (main, pinned), home.running():
        async with asyncio.timeout(10):
            await home.link.connected.wait()
        butler = await say(pinned["butler"], "Turn off the kitchen light.", "c1")
        pirate = await say(main, "Turn off the kitchen light.", "c2")
        info = await describe(pinned["butler"])
    intent = Intent.from_event(butler[0])
    assert intent.name == "HassTurnOff"
    assert [(e.name, e.value) for e in intent.entities] == [("name", "Kitchen Light")]
    assert intent.context["persona_id"] == "butler"
    assert Intent.from_event(pirate[0]).context["persona_id"] == "pirate"
    assert intent.text != Intent.from_event(pirate[0]).text
    assert info.handle[0].supports_home_control


def test_pinned_flags_are_parsed_and_checked():
    pins = parse_pinned(["butler=10510", "pirate=tcp://0.0.0.0:10511"], "tcp://127.0.0.1:10500")
    assert pins == (
        PinnedAgent("butler", "tcp://127.0.0.1:10510"),
        PinnedAgent("pirate", "tcp://0.0.0.0:10511"),
    )
    for bad, words in [
        (["butler"], "PERSONA=PORT"),
        (["Butler=10510"], "not a persona id"),
        (["butler=99999"], "out of range"),
        (["butler=10500"], "own address"),
        (["butler=10510", "butler=10511"], "pinned twice"),
        (["butler=http://x:1"], "tcp://"),
    ]:
        with pytest.raises(PinnedError, match=words):
            parse_pinned(bad, "tcp://127.0.0.1:10500")


def test_the_command_line_refuses_a_bad_pin_with_one_line(personas_dir: Path, state_dir: Path):
    base = [sys.executable, "-m", "wyoming_persona", "persona", "--personas-dir", str(personas_dir)]
    base += ["--state-dir", str(state_dir), "--backend", "ollama", "--ollama-api-port", "0"]
    unknown = subprocess.run(
        [*base, "--pinned-persona", "nobody=10999"], capture_output=True, text=True, timeout=60
    )
    malformed = subprocess.run(
        [*base, "--pinned-persona", "butler"], capture_output=True, text=True, timeout=60
    )
    assert unknown.returncode == 1
    assert "error: --pinned-persona nobody: no such persona" in unknown.stderr
    assert malformed.returncode == 2
    assert "PERSONA=PORT" in malformed.stderr
    assert "Traceback" not in unknown.stderr + malformed.stderr
