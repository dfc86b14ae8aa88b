"""The Wyoming handle server: info, voice switching through shared state, and bad input."""

from __future__ import annotations

import asyncio

from wyoming.event import Event, async_read_event, async_write_event
from wyoming.info import Describe, Info
from wyoming.ping import Ping

from wyoming_persona.agent.backends import OllamaSettings
from wyoming_persona.agent.backends.ollama import OllamaChatBackend
from wyoming_persona.personas import PersonaManager

from .conftest import assert_stream_order, handled, persona_server, say


def backend_for(fake) -> OllamaChatBackend:
    return OllamaChatBackend(OllamaSettings(host=fake.url))


async def test_describe_advertises_a_streaming_handle_program(fake_ollama, manager):
    backend = backend_for(fake_ollama)
    async with persona_server(manager, backend) as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        async with asyncio.timeout(10):
            await async_write_event(Describe().event(), writer)
            info = Info.from_event(await async_read_event(reader))
        writer.close()
    await backend.close()
    [program] = info.handle
    assert program.installed and program.supports_handled_streaming
    assert not program.supports_home_control
    assert "ollama" in program.description
    assert {m.name for m in program.models} == set(manager.personas)
    assert all(m.installed and m.languages == ["en"] for m in program.models)
    assert not info.asr and not info.tts and not info.intent


async def test_voice_switch_changes_the_shared_active_persona(fake_ollama, manager, personas_dir, state_dir):
    other_process = PersonaManager(personas_dir, state_dir, refresh_interval=0.0)
    backend = backend_for(fake_ollama)
    async with persona_server(manager, backend) as (server, _):
        switched = await say(server.port, "Switch to Captain Barnacle", "c")
        who = await say(server.port, "Who are you?", "c")
        talk_like = await say(server.port, "talk like the butler", "c")
        unknown = await say(server.port, "Let me talk to Captain Hook", "c")
        listed = await say(server.port, "Which personas do you have?", "c")
    await backend.close()

    assert_stream_order(switched)
    assert handled(switched).data["text"] == "Ahoy! Captain Barnacle at yer service."
    assert handled(switched).data["context"]["persona_id"] == "pirate"
    assert "Captain Barnacle" in handled(who).data["text"]
    assert handled(talk_like).data["text"] == manager.get("butler").greeting
    other_process.refresh()  # what a service's background watcher does
    assert other_process.active().id == "butler"
    for events in (unknown, listed):
        text = handled(events).data["text"]
        assert all(p.name in text for p in manager.personas.values()), text
    assert "Captain Hook" in handled(unknown).data["text"]
    assert other_process.active().id == "butler"
    assert fake_ollama.requests == []  # commands never reach the LLM


async def test_a_switch_made_elsewhere_applies_to_the_next_request(
    fake_ollama, manager, personas_dir, state_dir
):
    backend = backend_for(fake_ollama)
    async with persona_server(manager, backend) as (server, _):
        await say(server.port, "Hello?", "c")
        # Another process (the API, `talk --persona`) switches; the very next request speaks as robot,
        # without waiting for the service's background watcher.
        PersonaManager(personas_dir, state_dir).set_active("robot")
        reply = handled(await say(server.port, "Hello again?", "c"))
    await backend.close()
    assert reply.data["context"]["persona_id"] == "robot"
    second = fake_ollama.requests[1]["messages"]
    assert "Unit Seven" in second[0]["content"]
    users = [m["content"] for m in second if m["role"] == "user"]
    assert users[-1] == "Hello again?" and "Hello?" not in users  # a new persona starts a fresh history


async def test_empty_transcripts_are_not_handled(fake_ollama, manager):
    backend = backend_for(fake_ollama)
    async with persona_server(manager, backend) as (server, _):
        for text in ("", "   \n\t"):
            events = await say(server.port, text, "c")
            assert [e.type for e in events] == ["not-handled"]
            assert events[0].data["context"]["conversation_id"] == "c"
    await backend.close()
    assert fake_ollama.requests == []


async def test_bad_events_get_errors_and_the_connection_stays(fake_ollama, manager):
    backend = backend_for(fake_ollama)
    async with persona_server(manager, backend) as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        async with asyncio.timeout(30):
            for event in (
                Event("synthesize", {"text": "hi"}),
                Event("transcript", {"text": 42}),
                Event("transcript", {"text": "hi", "context": "nope"}),
                Event("transcript", {}),
            ):
                await async_write_event(event, writer)
                reply = await async_read_event(reader)
                assert reply.type == "error", reply
            await async_write_event(Ping(text="still here").event(), writer)
            pong = await async_read_event(reader)
            assert pong.type == "pong" and pong.data["text"] == "still here"
        writer.close()
    await backend.close()


async def test_garbage_frame_gets_an_error_and_a_close(fake_ollama, manager):
    backend = backend_for(fake_ollama)
    async with persona_server(manager, backend) as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        async with asyncio.timeout(10):
            writer.write(b"this is not json\n")
            await writer.drain()
            error = await async_read_event(reader)
            assert error.type == "error" and error.data.get("code") == "bad-frame"
            assert await reader.read() == b""
        writer.close()
        # The server keeps serving other connections.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        async with asyncio.timeout(10):
            await async_write_event(Ping(text="next").event(), writer)
            assert (await async_read_event(reader)).type == "pong"
        writer.close()
    await backend.close()
