"""Ollama through its official async client: streaming chat with keep_alive and context size."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import ollama

from ..models import server_model
from .base import BackendError, ChatRequest, Delta, ToolCall
from .settings import BackendSettings, OllamaSettings

_LOGGER = logging.getLogger(__name__)


class OllamaChatBackend:
    """Streams `/api/chat` replies from an Ollama server."""

    def __init__(self, settings: OllamaSettings) -> None:
        self.settings = settings
        self.name = f"ollama {settings.model} at {settings.host}"
        self._client = ollama.AsyncClient(host=settings.host, timeout=settings.timeout)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        settings = self.settings
        options: dict[str, float | int] = {}
        temperature = request.temperature if request.temperature is not None else settings.temperature
        if temperature is not None:
            options["temperature"] = temperature
        if request.top_p is not None:
            options["top_p"] = request.top_p
        if request.repeat_penalty is not None:
            options["repeat_penalty"] = request.repeat_penalty
        if settings.num_ctx:
            options["num_ctx"] = settings.num_ctx
        max_tokens = request.max_tokens or settings.max_tokens
        if max_tokens:
            options["num_predict"] = max_tokens
        if settings.seed is not None:
            options["seed"] = settings.seed
        try:
            parts = await self._client.chat(
                model=server_model(request.model, settings.model),
                messages=[dict(message) for message in request.messages],
                tools=[dict(tool) for tool in request.tools] or None,
                stream=True,
                options=options,
                keep_alive=settings.keep_alive,
            )
            async for part in parts:
                text = (part.message.content or "") if part.message else ""
                finish = (part.done_reason or "stop") if part.done else None
                calls = tuple(
                    ToolCall(call.function.name, dict(call.function.arguments or {}))
                    for call in (part.message.tool_calls if part.message else None) or ()
                )
                if text or finish or calls:
                    yield Delta(text, finish, calls)
        except ollama.ResponseError as err:
            raise BackendError(f"Ollama answered HTTP {err.status_code}: {err.error}") from err
        except (httpx.HTTPError, ConnectionError, ValueError) as err:
            raise BackendError(f"Ollama at {settings.host} failed: {err or type(err).__name__}") from err

    async def close(self) -> None:
        await self._client.close()


async def create(settings: BackendSettings) -> OllamaChatBackend:
    return OllamaChatBackend(settings.ollama)
