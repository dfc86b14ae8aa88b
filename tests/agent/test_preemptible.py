"""A speculative reply reads its prompt in small batches, so that a real turn can stop it before the
whole prompt is read (the real SmolLM2: llama.cpp reads a prompt in one call otherwise)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest

from wyoming_persona.agent.backends import ChatRequest
from wyoming_persona.agent.backends.embedded import PREEMPT_BATCH

pytestmark = pytest.mark.model
WAIT = 120.0
LONG = " ".join(f"Rule {n}: answer kindly and briefly, in plain words." for n in range(80))


class Batches:
    """Sizes of the model's evaluations; `first` is set after the first one."""

    def __init__(self, llama) -> None:
        self.sizes: list[int] = []
        self.first = threading.Event()
        real = llama.set_cache.__self__
        original = real.eval

        def counting(tokens) -> None:
            original(tokens)
            self.sizes.append(len(tokens))
            self.first.set()

        real.eval = counting
        self._real = real

    def remove(self) -> None:
        del self._real.eval


def request(text: str, preemptible: bool, test: str = "") -> ChatRequest:
    test = test or ("speculative" if preemptible else "real")
    system = f"{LONG} ({test} test)"  # no prefix cached across tests
    messages = ({"role": "system", "content": system}, {"role": "user", "content": text})
    return ChatRequest(messages=messages, max_tokens=4, temperature=0.0, preemptible=preemptible)


async def read(backend, chat_request: ChatRequest) -> str:
    async with asyncio.timeout(WAIT):
        return "".join([delta.text async for delta in backend.stream(chat_request)])


@pytest.mark.parametrize("preemptible", [True, False])
async def test_a_cancelled_speculation_stops_reading_its_prompt(smollm2, preemptible: bool) -> None:
    batches = Batches(smollm2._llama)
    smollm2._llama.reset()
    prompt_tokens = len(smollm2._llama.tokenize(LONG.encode(), add_bos=False))
    try:
        speculation = asyncio.create_task(read(smollm2, request("What is a good name", preemptible)))
        async with asyncio.timeout(WAIT):
            await asyncio.to_thread(batches.first.wait, WAIT)
        speculation.cancel()  # a real turn came
        await asyncio.gather(speculation, return_exceptions=True)
        before = list(batches.sizes)
        assert await read(smollm2, request("What is a good name for a cat?", preemptible))
    finally:
        batches.remove()
    if preemptible:
        assert max(before) <= PREEMPT_BATCH
        assert sum(before) < prompt_tokens  # stopped partway through the prompt
    else:
        assert before[0] >= prompt_tokens  # a normal request reads its whole prompt in one go


async def test_an_adopted_speculation_reads_the_rest_of_its_prompt_at_once(smollm2) -> None:
    """Adopted, a speculation is a real turn's reply: the rest of its prompt is read in one call."""
    batches = Batches(smollm2._llama)
    smollm2._llama.reset()
    prompt_tokens = len(smollm2._llama.tokenize(LONG.encode(), add_bos=False))
    read_whole = threading.Event()
    speculative = dataclasses.replace(request("What is a good name", True, "adopted"), read_whole=read_whole)
    try:
        reading = asyncio.create_task(read(smollm2, speculative))
        async with asyncio.timeout(WAIT):
            await asyncio.to_thread(batches.first.wait, WAIT)
        read_whole.set()  # a client adopted it: these are its words
        assert await reading
    finally:
        batches.remove()
    assert batches.sizes[0] <= PREEMPT_BATCH
    assert max(batches.sizes) > prompt_tokens // 2  # the rest at once, not batch after batch


async def test_a_question_read_ahead_is_not_read_again(smollm2, manager) -> None:
    """Words of a question still being spoken are read into the model; the reply to the whole
    question then reads only what came after them (the same real model, the same prompt)."""
    from wyoming_persona.agent.chat import ChatSettings, PersonaChat
    from wyoming_persona.agent.history import ConversationStore
    from wyoming_persona.agent.speculation import PreemptingBackend, SpeculationGate, Speculator

    gate = SpeculationGate()
    chat = PersonaChat(
        manager, PreemptingBackend(smollm2, gate), ConversationStore(), ChatSettings(timeout=60)
    )
    speculator = Speculator(chat, gate)

    async def answer(text: str) -> None:
        async def ignore(_: str) -> None:
            return None

        async with asyncio.timeout(WAIT):
            await chat.respond(text, f"conversation {text}", ignore)  # each a new conversation

    await answer("Hello there.")  # the persona's opening is in the prompt cache from now on
    batches = Batches(smollm2._llama)
    try:
        await answer("Tell me a short joke about cats.")
        plain = batches.sizes[0]  # the question and the turn's markers
        await speculator.read_ahead("How far away from the earth is the")
        async with asyncio.timeout(WAIT):
            read = await gate.reading
        batches.sizes.clear()
        await answer("How far away from the earth is the moon?")
        after = batches.sizes[0]
    finally:
        batches.remove()
    assert read >= 6
    assert after <= plain - 5  # the words read ahead were not read again
