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
from wyoming_persona.agent.backends.prompt_cache import PromptCache
from wyoming_persona.agent.backends.tool_text import render_messages
from wyoming_persona.agent.chat import ChatSettings, PersonaChat
from wyoming_persona.agent.ha_context import device_context
from wyoming_persona.agent.ha_shape import FILE_NAME, PromptShape, ShapeFile, ShapeKeeper, opening_request
from wyoming_persona.agent.history import ConversationStore
from wyoming_persona.agent.ollama_api import bound_port, start

from .test_ollama_api import HA_SYSTEM, TURN_ON

pytestmark = pytest.mark.model

SETTINGS = EmbeddedSettings(seed=0, n_ctx=2048, n_threads=2, temperature=0.0, max_tokens=12)
WAIT = 120.0


class Restores:
    """Length of each prefix the prompt cache restored for a generation."""

    def __init__(self, cache: PromptCache) -> None:
        self.lengths: list[int] = []
        original = cache.restore

        def counting(tokens) -> int:
            n = original(tokens)
            self.lengths.append(n)
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


async def test_a_restart_processes_home_assistants_prompt_shape_before_the_first_turn(manager, tmp_path):
    settings = dataclasses.replace(SETTINGS, prompt_cache_mib=64, prompt_cache_dir=tmp_path)
    shape_lengths = []
    for start_number in (1, 2):
        backend = LlamaCppChatBackend(settings, open_model(service_model_path(settings), settings))
        chat = PersonaChat(manager, backend, ConversationStore(), ChatSettings(timeout=WAIT))
        keeper = ShapeKeeper(chat, tmp_path)
        cache = PromptCache.of(backend._llama, 64, tmp_path)
        if start_number == 2:
            assert keeper.shape is not None and keeper.shape.models == ("persona",)
            await keeper.warm()  # what the service does at start
            assert cache.stats.loads == 1  # read back from the prompt folder, not processed
        restores = Restores(cache)
        runner = await start(chat, "127.0.0.1", 0, shapes=keeper)
        try:
            assert await ha_turn(f"http://127.0.0.1:{bound_port(runner)}", "What is the capital of Italy?")
            async with asyncio.timeout(WAIT):
                while keeper._task is not None and not keeper._task.done():  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        finally:
            await runner.cleanup()
            await keeper.close()
            await backend.close()
        shape_lengths.append(restores.lengths[0])
        saved = json.loads((tmp_path / FILE_NAME).read_text())
        assert saved["models"] == ["persona"] and saved["context"] == device_context([HA_SYSTEM])
        assert [tool["function"]["name"] for tool in saved["tools"]] == ["HassTurnOn"]
    opening = await _opening_tokens(manager, settings, tmp_path)
    assert shape_lengths[0] < opening  # the first start read HA's prompt with the question
    assert shape_lengths[1] == opening  # after the restart all of it was ready before the question


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
