"""A cancelled generation stops inside llama.cpp's reading of its prompt, and the model is whole after
it (the real SmolLM2: llama.cpp reads a prompt in one uninterruptible call of up to 512 tokens else)."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from wyoming_persona.agent.backends import ChatRequest

pytestmark = pytest.mark.model
WAIT = 120.0
LONG = " ".join(f"Rule {n}: answer kindly and briefly, in plain words." for n in range(80))


class Evals:
    """The model's prompt evaluations: `started` is set as one begins; each outcome is noted."""

    def __init__(self, llama) -> None:
        self.started = threading.Event()
        self.outcomes: list[str] = []
        real = llama.set_cache.__self__
        original = real.eval

        def watched(tokens) -> None:
            self.started.set()
            try:
                original(tokens)
            except RuntimeError:
                self.outcomes.append("stopped")
                raise
            self.outcomes.append(f"read {len(tokens)}")

        real.eval = watched
        self._real = real

    def remove(self) -> None:
        del self._real.eval


def request(text: str, test: str) -> ChatRequest:
    system = f"{LONG} ({test} test)"  # no prefix cached across tests
    messages = ({"role": "system", "content": system}, {"role": "user", "content": text})
    return ChatRequest(messages=messages, max_tokens=8, temperature=0.0)


async def read(backend, chat_request: ChatRequest) -> str:
    async with asyncio.timeout(WAIT):
        return "".join([delta.text async for delta in backend.stream(chat_request)])


async def stop_while_reading(backend, reading: asyncio.Task, evals: Evals) -> None:
    async with asyncio.timeout(WAIT):
        await asyncio.to_thread(evals.started.wait, WAIT)
    reading.cancel()  # a real turn came, or the client hung up
    await asyncio.gather(reading, return_exceptions=True)


@pytest.mark.parametrize("work", ["reply", "reading ahead"])
async def test_a_cancelled_generation_stops_inside_its_prompt_and_the_model_stays_whole(
    smollm2, work: str
) -> None:
    real = smollm2._llama.set_cache.__self__
    real.reset()
    prompt_tokens = len(real.tokenize(LONG.encode(), add_bos=False))
    clean = await read(smollm2, request("What is a good name for a cat?", f"{work} clean"))

    real.reset()
    evals = Evals(smollm2._llama)
    try:
        speculative = request("What is a good name for a dog?", work)
        if work == "reply":
            reading = asyncio.create_task(read(smollm2, speculative))
        else:
            reading = asyncio.create_task(smollm2.prefill(speculative))
        await stop_while_reading(smollm2, reading, evals)
        stopped_at = real.n_tokens
        answer = await read(smollm2, request("What is a good name for a cat?", f"{work} clean"))
    finally:
        evals.remove()
    assert evals.outcomes == ["stopped", *evals.outcomes[1:]]
    assert stopped_at < prompt_tokens  # it had not read the whole prompt
    assert "stopped" not in evals.outcomes[1:]  # the flag is down again for the next request
    assert answer == clean  # what the stopped read left behind changes nothing


async def test_a_question_read_ahead_is_not_read_again(smollm2, manager, caplog) -> None:
    """Words of a question still being spoken are read into the model; the reply to the whole
    question then reads only what came after them (the same real model, the same prompt), also when
    the words so far came without their capital. Reading ahead logs no reply (it once logged the
    no-answer line as one)."""
    from wyoming_persona.agent.chat import NO_ANSWER, ChatSettings, PersonaChat
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
    evals = Evals(smollm2._llama)
    sizes: list[int] = []
    try:
        await answer("Tell me a short joke about cats.")
        sizes.append(_first_read(evals))  # the question and the turn's markers
        with caplog.at_level(logging.DEBUG, logger="wyoming_persona.agent.chat"):
            await speculator.read_ahead("how far away from the earth is the")  # a window cut mid-phrase
            async with asyncio.timeout(WAIT):
                read_ahead = await gate.reading
        assert not [r for r in caplog.records if NO_ANSWER in r.getMessage()]
        evals.outcomes.clear()
        await answer("How far away from the earth is the moon?")
        sizes.append(_first_read(evals))
    finally:
        evals.remove()
    plain, after = sizes
    assert read_ahead >= 6
    assert after <= plain - 5  # the words read ahead were not read again


def _first_read(evals: Evals) -> int:
    size = int(evals.outcomes[0].removeprefix("read "))
    evals.outcomes.clear()
    return size


async def test_processing_a_prompt_ahead_makes_way_for_a_question_and_then_finishes(smollm2) -> None:
    """A prompt processed ahead (a persona's, or Home Assistant's shape) is stopped inside by a
    question that comes meanwhile, and processed again after the reply."""
    from wyoming_persona.agent.backends.prompt_cache import PromptCache

    real = smollm2._llama.set_cache.__self__
    real.reset()
    ahead = request("?", "processed ahead")
    cache = PromptCache.of(smollm2._llama, smollm2.settings.prompt_cache_mib)
    assert cache is not None
    evals = Evals(smollm2._llama)
    try:
        warming = asyncio.create_task(smollm2.warm([ahead]))
        async with asyncio.timeout(WAIT):
            await asyncio.to_thread(evals.started.wait, WAIT)
        answer = await read(smollm2, request("What is a good name for a cat?", "question meanwhile"))
        async with asyncio.timeout(WAIT):
            await warming
    finally:
        evals.remove()
    assert answer
    assert evals.outcomes[0] == "stopped"
    assert evals.outcomes[-1].startswith("read")  # processed after the reply
    assert len(cache.prefix_of(list(ahead.messages))) in map(len, cache.prefixes())
