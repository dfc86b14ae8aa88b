"""Ollama through its official async client: streaming chat with keep_alive and context size."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import httpx
import ollama

from .base import BackendError, ChatRequest, Delta

_LOGGER = logging.getLogger(__name__)

DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_MODEL = "llama3.2"


@dataclass(frozen=True)
class OllamaSettings:
    host: str = DEFAULT_HOST
    model: str = DEFAULT_MODEL
    keep_alive: str | float | None = "5m"
    num_ctx: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    timeout: float = 30.0
    """httpx timeout for connect/read; the service adds its own first-token and overall limits."""


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
        if settings.num_ctx:
            options["num_ctx"] = settings.num_ctx
        max_tokens = request.max_tokens or settings.max_tokens
        if max_tokens:
            options["num_predict"] = max_tokens
        if settings.seed is not None:
            options["seed"] = settings.seed
        try:
            parts = await self._client.chat(
                model=request.model or settings.model,
                messages=[dict(message) for message in request.messages],
                stream=True,
                options=options,
                keep_alive=settings.keep_alive,
            )
            async for part in parts:
                text = (part.message.content or "") if part.message else ""
                finish = (part.done_reason or "stop") if part.done else None
                if text or finish:
                    yield Delta(text, finish)
        except ollama.ResponseError as err:
            raise BackendError(f"Ollama answered HTTP {err.status_code}: {err.error}") from err
        except (httpx.HTTPError, ConnectionError, ValueError) as err:
            raise BackendError(f"Ollama at {settings.host} failed: {err or type(err).__name__}") from err

    async def close(self) -> None:
        await self._client.close()


async def probe_ollama(host: str, wait: float = 2.0) -> bool:
    """True if an Ollama server answers `GET /api/tags` at `host` within `wait` seconds."""
    url = host.rstrip("/") + "/api/tags"
    if "://" not in url:
        url = "http://" + url
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=wait)) as session,
            session.get(url) as response,
        ):
            if response.status != 200:
                _LOGGER.debug("Ollama probe at %s: HTTP %s", url, response.status)
                return False
            await response.json(content_type=None)
            return True
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        _LOGGER.debug("Ollama probe at %s failed: %s", url, err or type(err).__name__)
        return False
