"""The prompt cache with the real SmolLM2: same replies as without it, only new tokens evaluated
after a persona switch or in a new conversation, and a size cap that holds."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from wyoming_persona.agent.backends import ChatRequest, EmbeddedSettings
from wyoming_persona.agent.backends.embedded import LlamaCppChatBackend, open_model, service_model_path
from wyoming_persona.agent.backends.prompt_cache import PromptCache
from wyoming_persona.agent.cli import opening_requests
from wyoming_persona.agent.models import model_file
from wyoming_persona.personas import Persona, PersonaManager, persona_messages

pytestmark = pytest.mark.model

SETTINGS = EmbeddedSettings(seed=0, n_ctx=2048, n_threads=2, temperature=0.0, max_tokens=20)


class Evals:
    """Counts the tokens of every `Llama.eval` call of one real model."""

    def __init__(self, llama) -> None:
        self.batches: list[int] = []
        original = llama.eval

        def counting(tokens) -> None:
            self.batches.append(len(tokens))
            original(tokens)

        llama.eval = counting  # an instance attribute: Llama.generate calls self.eval

    def clear(self) -> None:
        self.batches.clear()


@dataclasses.dataclass
class Model:
    backend: LlamaCppChatBackend
    evals: Evals

    @property
    def llama(self):
        return self.backend._llama


def _model(prompt_cache_mib: float) -> Model:
    settings = dataclasses.replace(SETTINGS, prompt_cache_mib=prompt_cache_mib)
    llama = open_model(service_model_path(settings), settings)
    return Model(LlamaCppChatBackend(settings, llama), Evals(llama))


@pytest.fixture(scope="module")
def cached() -> Iterator[Model]:
    model = _model(64)
    yield model
    asyncio.run(model.backend.close())


@pytest.fixture(scope="module")
def uncached() -> Iterator[Model]:
    model = _model(0)
    yield model
    asyncio.run(model.backend.close())


@pytest.fixture(scope="module")
def personas(tmp_path_factory) -> dict[str, Persona]:
    manager = PersonaManager(
        Path(__file__).resolve().parents[2] / "config" / "personas",
        tmp_path_factory.mktemp("state"),
        refresh_interval=0.0,
    )
    return dict(manager.personas)


def _request(persona: Persona, *turns: str) -> ChatRequest:
    """A conversation with `persona`: user and assistant turns alternating, ending with the user's."""
    roles = ("user", "assistant")
    history = [{"role": roles[i % 2], "content": text} for i, text in enumerate(turns)]
    return ChatRequest(messages=(*persona_messages(persona), *history), temperature=0.0)


async def _reply(model: Model, request: ChatRequest) -> str:
    return "".join([delta.text async for delta in model.backend.stream(request)])


def _prompt_tokens(model: Model, request: ChatRequest) -> list[int]:
    return PromptCache(model.llama, 0).render(list(request.messages))


async def test_replies_with_the_cache_equal_replies_without_it(cached, uncached, personas):
    pirate, butler = personas["pirate"], personas["butler"]
    await cached.backend.warm(opening_requests([pirate, butler]))
    assert len(PromptCache.of(cached.llama, 64).prefixes()) == 2

    first = _request(pirate, "What time is it?")
    replies = {}
    for name, model in (("cached", cached), ("uncached", uncached)):
        answer = await _reply(model, first)
        replies[name] = [
            answer,
            await _reply(model, _request(butler, "Can you bring me some tea?")),  # a persona switch
            await _reply(model, _request(pirate, "What time is it?", answer, "And tomorrow?")),  # follow-up
            await _reply(model, _request(butler, "Where are my keys?")),  # a new conversation
        ]
    assert all(replies["cached"]), replies
    assert replies["cached"] == replies["uncached"]
    assert PromptCache.of(cached.llama, 64).stats.restores >= 3


async def test_after_warming_a_persona_switch_evaluates_only_the_new_tokens(cached, uncached, personas):
    robot, coach = personas["robot"], personas["coach"]
    await cached.backend.warm(opening_requests([robot, coach]))
    cache = PromptCache.of(cached.llama, 64)
    coach_prefix = cache.prefix_of(opening_requests([coach])[0].messages)
    question = _request(coach, "How do I start running?")
    tokens = _prompt_tokens(cached, question)
    assert tuple(tokens[: len(coach_prefix)]) == coach_prefix

    for model in (cached, uncached):
        await _reply(model, _request(robot, "Status report, please."))
        model.evals.clear()
        await _reply(model, question)
        prompt, *generated = model.evals.batches
        assert set(generated) == {1}  # then one token at a time
        if model is cached:
            assert prompt == len(tokens) - len(coach_prefix)  # the question and its turn markers only
            assert prompt < 20 < len(coach_prefix)
        else:
            assert prompt > len(coach_prefix) - 10  # today's behaviour: the whole prompt again


async def test_an_unwarmed_persona_keeps_its_system_prompt_from_the_first_request(uncached, personas):
    """A persona nobody warmed (e.g. edited while serving): the first request stores the prompt up to
    the first user turn, so the next new conversation evaluates only the example turns and question."""
    backend = LlamaCppChatBackend(
        dataclasses.replace(uncached.backend.settings, prompt_cache_mib=64), uncached.llama
    )
    model = Model(backend, uncached.evals)
    assistant, pirate = personas["assistant"], personas["pirate"]
    try:
        await _reply(model, _request(assistant, "What is the capital of France?"))
        await _reply(model, _request(pirate, "Ahoy!"))  # the model now holds another prompt
        second = _request(assistant, "How far is the moon?")
        head = PromptCache.of(uncached.llama, 64).prefix_of(
            [second.messages[0], {"role": "user", "content": ""}]
        )
        model.evals.clear()
        await _reply(model, second)
        assert model.evals.batches[0] == len(_prompt_tokens(model, second)) - len(head)
    finally:
        uncached.llama.set_cache(None)
        backend._executor.shutdown()


async def test_the_cache_stays_under_its_cap(uncached, personas):
    llama = uncached.llama
    cache = PromptCache(llama, 64 * 2**20)
    llama.set_cache(cache)
    try:
        assistant, robot = (opening_requests([personas[name]])[0].messages for name in ("assistant", "robot"))
        cache.warm(assistant)
        one = cache.stats.size_bytes
        cache.capacity_bytes = int(one * 1.5)  # room for one persona prompt, not two
        cache.warm(robot)
        assert cache.prefixes() == [cache.prefix_of(robot)]  # the least recently used one went
        assert 0 < cache.stats.size_bytes <= cache.capacity_bytes

        cache.capacity_bytes = 1024  # smaller than any snapshot: nothing is kept
        cache.warm(assistant)
        assert cache.prefixes() == [cache.prefix_of(robot)]
    finally:
        llama.set_cache(None)


async def test_persona_models_are_loaded_at_start_not_at_the_first_reply(cached):
    backend = LlamaCppChatBackend(SETTINGS, cached.llama)
    try:
        await backend.prepare_models([("pirate.yaml", "qwen-0.5b"), ("robot.yaml", None)])
        assert [path.name for path in backend._extra] == [model_file("qwen-0.5b").name]
    finally:
        await asyncio.to_thread(backend._executor.shutdown)
        for llama in backend._extra.values():
            llama.close()


async def test_a_restart_reads_the_saved_persona_prompts_instead_of_processing_them(personas, tmp_path):
    settings = dataclasses.replace(SETTINGS, prompt_cache_mib=64, prompt_cache_dir=tmp_path)
    pirate = personas["pirate"]
    question = _request(pirate, "What time is it?")
    replies = []
    for start in ("first", "restart"):
        llama = open_model(service_model_path(settings), settings)
        model = Model(LlamaCppChatBackend(settings, llama), Evals(llama))
        try:
            await model.backend.warm(opening_requests([pirate]))
            stats = PromptCache.of(model.llama, 64).stats
            if start == "first":
                assert model.evals.batches and stats.loads == 0  # processed, and saved
                assert len(list(tmp_path.glob("*.kv"))) == 1
            else:
                assert model.evals.batches == [] and stats.loads == 1  # read back, nothing processed
            model.evals.clear()
            replies.append(await _reply(model, question))
            prompt, *_ = model.evals.batches
            assert prompt < 20  # the question and its turn markers only
        finally:
            await model.backend.close()
    assert replies[0] and replies[0] == replies[1]


async def test_a_prompt_folder_that_cannot_be_written_is_a_warning(personas, tmp_path, caplog):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    settings = dataclasses.replace(SETTINGS, prompt_cache_mib=64, prompt_cache_dir=blocked)
    llama = open_model(service_model_path(settings), settings)
    model = Model(LlamaCppChatBackend(settings, llama), Evals(llama))
    try:
        await model.backend.warm(opening_requests([personas["robot"]]))
        assert PromptCache.of(model.llama, 64).stats.entries == 1  # kept in memory all the same
        assert "Could not save a prompt snapshot" in caplog.text
        assert await _reply(model, _request(personas["robot"], "Status?"))
    finally:
        await model.backend.close()
