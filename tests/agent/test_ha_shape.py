"""Home Assistant's prompt shape is kept on disk and processed at start: the first turn of HA's Ollama
integration after a restart reads only its own question (the real SmolLM2, the official client)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import ollama
import pytest

from wyoming_persona.agent.backends import EmbeddedSettings
from wyoming_persona.agent.backends.embedded import LlamaCppChatBackend, open_model, service_model_path
from wyoming_persona.agent.backends.prompt_cache import PromptCache, _common_prefix
from wyoming_persona.agent.backends.tool_text import render_messages
from wyoming_persona.agent.chat import ChatSettings, PersonaChat
from wyoming_persona.agent.ha_context import device_context
from wyoming_persona.agent.ha_shape import (
    FILE_NAME,
    PromptShape,
    ShapeFile,
    ShapeKeeper,
    opening_request,
    stable_tools,
)
from wyoming_persona.agent.history import ConversationStore
from wyoming_persona.agent.ollama_api import bound_port, start

from .test_ollama_api import HA_SYSTEM, TURN_ON

pytestmark = pytest.mark.model

SETTINGS = EmbeddedSettings(seed=0, n_ctx=2048, n_threads=2, temperature=0.0, max_tokens=12)
WAIT = 120.0


class Restores:
    """For each generation, the length of the prompt's prefix that the model held before reading the
    rest: left from the work before it, or restored by the prompt cache."""

    def __init__(self, cache: PromptCache) -> None:
        self.lengths: list[int] = []
        original = cache.restore
        llama = cache._llama

        def counting(tokens) -> int:
            live = _common_prefix(llama.input_ids[: llama.n_tokens].tolist(), tokens)
            n = original(tokens)
            self.lengths.append(max(live, n))
            return n

        cache.restore = counting


async def ha_turn(url: str, question: str) -> str:
    """One turn as HA's Ollama integration sends it (its system message, its tools)."""
    client = ollama.AsyncClient(host=url, timeout=WAIT)
    messages = [{"role": "system", "content": HA_SYSTEM}, {"role": "user", "content": question}]
    try:
        async with asyncio.timeout(WAIT):
            parts = [p async for p in await client.chat("persona", messages, tools=[TURN_ON], stream=True)]
    finally:
        await client.close()
    return "".join(part.message.content or "" for part in parts)


class Requests:
    """Whether each request the backend got carried HA's tools."""

    def __init__(self, backend: LlamaCppChatBackend) -> None:
        self.with_tools: list[bool] = []
        original = backend.stream

        def recording(request):
            self.with_tools.append(bool(request.tools))
            return original(request)

        backend.stream = recording


async def wait_for_warming(keeper: ShapeKeeper) -> None:
    async with asyncio.timeout(WAIT):
        while keeper._task is not None and not keeper._task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_home_assistants_prompt_is_answered_around_until_processed_then_ready_at_each_start(
    manager, tmp_path
):
    """The very first turn: a question about something else is answered by the persona alone, a home
    command with HA's prompt; the shape is processed after the turn and read back at the next start."""
    settings = dataclasses.replace(SETTINGS, prompt_cache_mib=64, prompt_cache_dir=tmp_path)
    restored: list[list[int]] = []
    tools: list[list[bool]] = []
    for start_number in (1, 2):
        backend = LlamaCppChatBackend(settings, open_model(service_model_path(settings), settings))
        chat = PersonaChat(manager, backend, ConversationStore(), ChatSettings(timeout=WAIT))
        keeper = ShapeKeeper(chat, tmp_path)
        cache = PromptCache.of(backend._llama, 64, tmp_path)
        if start_number == 2:
            assert keeper.shape is not None and keeper.shape.models == ("persona",)
            await keeper.warm()  # what the service does at start
            assert cache.stats.loads == 1  # read back from the prompt folder, not processed
        restores, requests = Restores(cache), Requests(backend)
        runner = await start(chat, "127.0.0.1", 0, shapes=keeper)
        url = f"http://127.0.0.1:{bound_port(runner)}"
        lengths = []  # the prefix restored for each turn
        try:
            assert await ha_turn(url, "What is the capital of Italy?")
            lengths.append(restores.lengths[-1])
            if start_number == 1:
                await ha_turn(url, "Turn on the kitchen light.")  # may be a tool call only
                lengths.append(restores.lengths[-1])
                await wait_for_warming(keeper)
                assert await ha_turn(url, "What is the capital of Spain?")
                lengths.append(restores.lengths[-1])
            await wait_for_warming(keeper)
        finally:
            await runner.cleanup()
            await keeper.close()
            await backend.close()
        restored.append(lengths)
        tools.append(requests.with_tools)
        saved = json.loads((tmp_path / FILE_NAME).read_text())
        assert saved["models"] == ["persona"] and saved["context"] == device_context([HA_SYSTEM])
        assert [tool["function"]["name"] for tool in saved["tools"]] == ["HassTurnOn"]
    opening = await _opening_tokens(manager, settings, tmp_path)
    assert tools == [[False, True, True], [True]]
    assert restored[0][0] < opening  # the first question: the persona's own opening, not HA's
    assert restored[0][2] == opening  # once processed, HA's prompt was ready before the question
    assert restored[1][0] == opening  # and after the restart, before the first question


async def _opening_tokens(manager, settings, folder: Path) -> int:
    """Tokens of the opening of HA's shape for the active persona, as the chat template renders it."""
    backend = LlamaCppChatBackend(settings, open_model(service_model_path(settings), settings))
    try:
        chat = PersonaChat(manager, backend, ConversationStore(), ChatSettings(timeout=WAIT))
        request = await opening_request(chat, None, ShapeFile(folder).load())
        cache = PromptCache.of(backend._llama, 64)
        return len(cache.prefix_of(render_messages(request.messages, request.tools)))
    finally:
        await backend.close()


def test_a_bad_shape_file_is_ignored_with_a_warning(tmp_path, caplog):
    path = tmp_path / FILE_NAME
    for text in ("{not json", json.dumps({"version": 99}), json.dumps({"version": 1, "models": [3]})):
        path.write_text(text)
        assert ShapeFile(tmp_path).load() is None
    assert caplog.text.count("Ignoring") == 3
    shape = PromptShape(("persona", "pirate"), "the home", ({"type": "function", "function": {"name": "X"}},))
    ShapeFile(tmp_path).save(shape)
    assert ShapeFile(tmp_path).load() == shape


def test_home_assistants_tools_give_one_prompt_whatever_their_order():
    """HA lists its tools, and each tool's device classes, in another order after a restart."""
    turn_on = {
        "type": "function",
        "function": {
            "name": "HassTurnOn",
            "parameters": {
                "type": "object",
                "properties": {"device_class": {"type": "array", "items": {"enum": ["water", "door"]}}},
            },
        },
    }
    again = json.loads(json.dumps(turn_on).replace('["water", "door"]', '["door", "water"]'))
    light = {"type": "function", "function": {"name": "HassLightSet", "parameters": {}}}
    other = {"type": "function", "function": {"name": "AddToShoppingList", "parameters": {}}}
    first, second = stable_tools([other, turn_on, light]), stable_tools([light, again, other])
    assert first == second
    assert [tool["function"]["name"] for tool in first] == ["HassTurnOn", "HassLightSet", "AddToShoppingList"]
    device_class = first[0]["function"]["parameters"]["properties"]["device_class"]
    assert device_class["items"]["enum"] == ["door", "water"]
    assert render_messages([], first) == render_messages([], second)
