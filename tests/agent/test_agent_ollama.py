"""The Ollama backend through the official client, against an in-test server speaking /api/chat NDJSON."""

from __future__ import annotations

import asyncio
import logging

from wyoming.asr import Transcript
from wyoming.event import async_read_event, async_write_event

from wyoming_persona.agent.backends import (
    BackendKind,
    BackendSettings,
    OllamaSettings,
    create_backend,
    probe_ollama,
)
from wyoming_persona.agent.backends.base import ChatRequest
from wyoming_persona.agent.backends.ollama import OllamaChatBackend
from wyoming_persona.agent.chat import ChatSettings
from wyoming_persona.personas import persona_messages

from .conftest import assert_stream_order, handled, persona_server, say


def ollama(fake, **overrides) -> OllamaChatBackend:
    settings = OllamaSettings(host=fake.url, model="llama3.2", keep_alive="10m", num_ctx=4096, seed=7)
    return OllamaChatBackend(settings.__class__(**{**settings.__dict__, **overrides}))


async def test_streamed_reply_and_what_the_client_sends(fake_ollama, manager):
    manager.set_active("pirate")
    pirate = manager.get("pirate")
    backend = ollama(fake_ollama)
    async with persona_server(manager, backend) as (server, _):
        events = await say(server.port, "How is the sea?", "conv-1")
    await backend.close()

    assert_stream_order(events)
    chunks = [e.data["text"] for e in events if e.type == "handled-chunk"]
    assert chunks == ["Ahoy matey!", " The sea is calm today."]
    reply = handled(events)
    assert reply.data["context"]["conversation_id"] == "conv-1"
    assert reply.data["context"]["persona_id"] == "pirate"

    [body] = fake_ollama.requests
    assert body["model"] == "llama3.2"
    assert body["stream"] is True
    assert body["keep_alive"] == "10m"
    assert body["messages"] == [*persona_messages(pirate), {"role": "user", "content": "How is the sea?"}]
    assert body["options"] == {
        "temperature": pirate.llm.temperature,
        "top_p": pirate.llm.top_p,
        "repeat_penalty": pirate.llm.repeat_penalty,
        "num_ctx": 4096,
        "num_predict": pirate.llm.max_reply_tokens,
        "seed": 7,
    }


async def test_history_follows_the_conversation_across_connections(fake_ollama, manager):
    backend = ollama(fake_ollama)
    async with persona_server(manager, backend) as (server, _):
        await say(server.port, "First question?", "conv-a")
        await say(server.port, "Another chat", "conv-b")
        await say(server.port, "Second question?", "conv-a")
    await backend.close()

    preamble = len(persona_messages(manager.active()))  # system prompt and example turns
    third = fake_ollama.requests[2]["messages"][preamble:]
    assert [m["role"] for m in third] == ["user", "assistant", "user"]
    assert third[0]["content"] == "First question?"
    assert third[1]["content"] == "Ahoy matey! The sea is calm today."
    assert third[2]["content"] == "Second question?"
    assert len(fake_ollama.requests[1]["messages"]) == preamble + 1  # conv-b knows nothing of conv-a


async def test_no_conversation_id_starts_fresh_and_returns_one(fake_ollama, manager):
    backend = ollama(fake_ollama)
    async with persona_server(manager, backend) as (server, _):
        first = handled(await say(server.port, "Hello?"))
        second = handled(await say(server.port, "Hello again?"))
        conversation_id = first.data["context"]["conversation_id"]
        third = handled(await say(server.port, "And now?", conversation_id))
    await backend.close()

    assert conversation_id and conversation_id != second.data["context"]["conversation_id"]
    assert third.data["context"]["conversation_id"] == conversation_id
    preamble = len(persona_messages(manager.active()))
    assert len(fake_ollama.requests[1]["messages"]) == preamble + 1
    assert len(fake_ollama.requests[2]["messages"]) == preamble + 3


async def test_persona_model_override_and_length_cut(fake_ollama, manager, personas_dir):
    path = personas_dir / "robot.yaml"
    path.write_text(path.read_text().replace("llm:\n", "llm:\n  model: qwen2.5:0.5b\n"))
    manager.refresh()  # what the service's background watcher does
    manager.set_active("robot")
    fake_ollama.reply = ["Affirmative.", " Processing the", " request"]
    fake_ollama.done_reason = "length"
    backend = ollama(fake_ollama)
    async with persona_server(manager, backend) as (server, _):
        events = await say(server.port, "Status?", "c")
    await backend.close()
    assert fake_ollama.requests[0]["model"] == "qwen2.5:0.5b"
    assert handled(events).data["text"] == "Affirmative."


async def test_http_error_gives_the_fallback_then_recovers(fake_ollama, manager, caplog):
    manager.set_active("pirate")
    backend = ollama(fake_ollama)
    caplog.set_level(logging.WARNING)
    async with persona_server(manager, backend) as (server, _):
        fake_ollama.mode = "error"
        failed = await say(server.port, "Anyone there?", "c")
        again = await say(server.port, "Still there?", "c")
        fake_ollama.mode = "ok"
        recovered = await say(server.port, "Now?", "c")
    await backend.close()

    fallback = manager.get("pirate").spec.fallbacks.backend_down
    assert_stream_order(failed)
    assert handled(failed).data["text"] == fallback
    assert handled(again).data["text"] == fallback
    assert handled(recovered).data["text"] == "Ahoy matey! The sea is calm today."
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "ollama" in r.getMessage()]
    assert len(warnings) == 1 and "404" in warnings[0].getMessage()
    assert warnings[0].exc_info is None
    # Failed turns are not history: the recovered request sees none of them.
    assert len(fake_ollama.requests[2]["messages"]) == len(persona_messages(manager.get("pirate"))) + 1


async def test_a_hanging_server_times_out_to_the_fallback(fake_ollama, manager):
    manager.set_active("butler")
    backend = ollama(fake_ollama)
    async with persona_server(manager, backend, ChatSettings(timeout=0.5)) as (server, _):
        fake_ollama.mode = "hang"
        timed_out = await say(server.port, "Hello?", "c")
        fake_ollama.mode = "ok"
        fake_ollama.release.set()
        recovered = await say(server.port, "Hello again?", "c")
    await backend.close()
    assert handled(timed_out).data["text"] == manager.get("butler").spec.fallbacks.backend_down
    assert handled(recovered).data["text"] == "Ahoy matey! The sea is calm today."


async def test_unreachable_ollama_gives_the_fallback(manager, unused_tcp_port):
    backend = OllamaChatBackend(OllamaSettings(host=f"http://127.0.0.1:{unused_tcp_port}"))
    async with persona_server(manager, backend) as (server, _):
        events = await say(server.port, "Hello?", "c")
    await backend.close()
    assert handled(events).data["text"] == manager.active().spec.fallbacks.backend_down


async def test_client_disconnect_stops_the_stream(fake_ollama, manager):
    fake_ollama.mode = "endless"
    await assert_disconnect_stops(fake_ollama, manager, ollama(fake_ollama))


async def assert_disconnect_stops(fake, manager, backend) -> None:
    """Hang up after the first chunk of an endless reply: the server must stop reading the LLM."""
    fake.reply = ["Ahoy there, my fine matey,", " the sea"]  # no sentence ends: the reply never stops
    async with persona_server(manager, backend) as (server, chat):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        async with asyncio.timeout(30):
            transcript = Transcript("Talk forever", context={"conversation_id": "c"})
            await async_write_event(transcript.event(), writer)
            types = []
            while "handled-chunk" not in types:
                types.append((await async_read_event(reader)).type)
            writer.close()
            await fake.client_gone.wait()
    await backend.close()
    # Stopped, not finished: a finished reply (e.g. by the length cap) would be in the history.
    assert chat.store.turns("c", manager.active().id) == []


async def test_auto_probe_picks_ollama_when_it_answers(fake_ollama, unused_tcp_port):
    assert await probe_ollama(fake_ollama.url)
    assert not await probe_ollama(f"http://127.0.0.1:{unused_tcp_port}", 1.0)
    backend = await create_backend(
        BackendSettings(kind=BackendKind.AUTO, ollama=OllamaSettings(host=fake_ollama.url))
    )
    try:
        assert isinstance(backend, OllamaChatBackend)
    finally:
        await backend.close()


async def test_a_persona_model_for_the_embedded_backend_is_not_sent_to_ollama(fake_ollama):
    """`llm.model: qwen-1.5b` (a catalog name) or a .gguf path means nothing to Ollama: the backend's own
    model answers; any other name is Ollama's ("mistral:7b")."""
    backend = ollama(fake_ollama)
    messages = ({"role": "user", "content": "Hi"},)
    for model in ("qwen-1.5b", "/models/pirate.gguf", "mistral:7b", None):
        async for _ in backend.stream(ChatRequest(messages=messages, model=model)):
            pass
    await backend.close()
    assert [body["model"] for body in fake_ollama.requests] == [
        "llama3.2",
        "llama3.2",
        "mistral:7b",
        "llama3.2",
    ]
