"""A persona worth talking to: short spoken replies, each persona in its own words, and memory that
lasts one conversation, checked through the Wyoming handle with the real models."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from wyoming_persona.agent.backends import EmbeddedSettings
from wyoming_persona.agent.backends.embedded import LlamaCppChatBackend
from wyoming_persona.agent.chat import ChatSettings, PersonaChat, wants_detail
from wyoming_persona.agent.history import ConversationStore
from wyoming_persona.personas import persona_messages

from .conftest import CountingLlama, ScriptedBackend, collecting, handled, persona_server, say

LONG = "Arr, that be Rome. It sits on seven hills. The Tiber runs through it. Caesar lived there."


async def test_a_reply_stops_after_two_sentences(manager):
    manager.set_active("pirate")
    chat = PersonaChat(manager, ScriptedBackend(LONG), ConversationStore())
    chunks: list[str] = []
    reply = await chat.respond("What is the capital of Italy?", "c", collecting(chunks))
    assert reply.text == "Arr, that be Rome. It sits on seven hills." == "".join(chunks)


async def test_a_greeting_does_not_crowd_out_the_answer(manager):
    """Interjections of up to three words do not count toward the two sentences."""
    manager.set_active("pirate")
    text = "Ahoy, me hearty! I'm Captain Barnacle, matey. Rome be the capital. It sits on hills."
    backend = ScriptedBackend(text)
    chat = PersonaChat(manager, backend, ConversationStore())
    reply = await chat.respond("Who are you and what's the capital of Italy?", "c", collecting([]))
    assert reply.text == "Ahoy, me hearty! I'm Captain Barnacle, matey. Rome be the capital."


async def test_asking_for_more_gets_more(manager):
    manager.set_active("pirate")
    backend = ScriptedBackend(LONG)
    chat = PersonaChat(manager, backend, ConversationStore(), ChatSettings(detail_sentences=3))
    reply = await chat.respond("Tell me more about Rome.", "c", collecting([]))
    assert reply.text == "Arr, that be Rome. It sits on seven hills. The Tiber runs through it."
    assert backend.requests[0].max_tokens == 3 * manager.get("pirate").llm.max_reply_tokens


def test_detail_requests_are_recognised():
    assert wants_detail("Can you explain how rainbows form?")
    assert wants_detail("Tell me a story")
    assert not wants_detail("What is the capital of Italy?")


# -- each persona in its own words, with the real default model -----------------------------------
SIGNATURE = {
    "pirate": ("matey", "arr", "aye", "ahoy", "hearty"),
    "butler": ("sir", "madam", "very good", "certainly"),
    "coach": ("champ", "let's go", "you've got this"),
    "robot": ("affirmative", "negative", "processing"),
}
MAX_SPOKEN_WORDS = 40


@pytest.mark.model
async def test_each_persona_sounds_like_itself(smollm2, manager):
    replies = {}
    async with persona_server(manager, smollm2) as (server, _):
        for persona_id in manager.personas:
            manager.set_active(persona_id)
            events = await say(server.port, "Is it cold outside?", persona_id)
            replies[persona_id] = handled(events).data["text"]
    for persona_id, reply in replies.items():
        lowered = reply.lower()
        assert len(reply.split()) <= MAX_SPOKEN_WORDS, (persona_id, reply)
        own = SIGNATURE.get(persona_id)
        assert own is None or any(word in lowered for word in own), (persona_id, reply)
        for other, words in SIGNATURE.items():
            if other != persona_id:
                assert not any(word in lowered.split() for word in words), (persona_id, other, reply)


# -- memory, with the model that recalls -----------------------------------------------------------
@pytest.fixture(scope="module")
def qwen() -> Iterator[LlamaCppChatBackend]:
    """Qwen2.5-Coder-0.5B from the model catalog (joined once into the cache)."""
    loaded = LlamaCppChatBackend.load(EmbeddedSettings(model="qwen-0.5b", seed=0, n_threads=2))
    backend = LlamaCppChatBackend(loaded.settings, CountingLlama(loaded._llama), loaded._path)
    yield backend
    loaded._executor.shutdown()
    asyncio.run(backend.close())


@pytest.mark.model
async def test_a_fact_is_recalled_in_its_conversation_only(qwen, manager):
    manager.set_active("assistant")
    settings = ChatSettings(timeout=120, reply_timeout=300)
    async with persona_server(manager, qwen, settings) as (server, _):
        await say(server.port, "My name is Alice and my favourite colour is green.", "home")
        await say(server.port, "What is the capital of Italy?", "home")
        name = handled(await say(server.port, "What is my name?", "home")).data["text"]
        sent = qwen._llama.prompts[-1]
        other = handled(await say(server.port, "What is my name?", "elsewhere")).data["text"]
        colour = handled(await say(server.port, "What is my favourite colour?", "home")).data["text"]

    # The model was given the whole conversation after the persona's own turns, nothing dropped.
    preamble = persona_messages(manager.get("assistant"))
    assert sent[: len(preamble)] == preamble
    assert [m["content"] for m in sent[len(preamble) :] if m["role"] == "user"] == [
        "My name is Alice and my favourite colour is green.",
        "What is the capital of Italy?",
        "What is my name?",
    ]
    assert "alice" in name.lower(), name
    assert "green" in colour.lower(), colour
    assert "alice" not in other.lower(), other
