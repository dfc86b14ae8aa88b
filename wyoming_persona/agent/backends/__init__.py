"""Chat backends, registered by name and imported only when chosen, and the `auto` choice between them.

`--backend embedded` never imports the Ollama client (nor `httpx`); `--backend ollama` never imports
llama.cpp. A backend module provides `async def create(settings: BackendSettings) -> ChatBackend`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping

import aiohttp

from .base import BackendError, ChatBackend, ChatMessage, ChatRequest, Delta, ToolCall
from .settings import BackendKind, BackendSettings, EmbeddedSettings, OllamaSettings, OpenAISettings

_LOGGER = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "BackendError",
    "BackendKind",
    "BackendSettings",
    "ChatBackend",
    "ChatMessage",
    "ChatRequest",
    "Delta",
    "EmbeddedSettings",
    "OllamaSettings",
    "OpenAISettings",
    "ToolCall",
    "create_backend",
    "probe_ollama",
]

BACKENDS: Mapping[BackendKind, tuple[str, str]] = {
    BackendKind.OLLAMA: (".ollama", "the 'llm' extra: pip install 'wyoming-persona[llm]'"),
    BackendKind.OPENAI: (".openai", "aiohttp, a core dependency"),
    BackendKind.EMBEDDED: (".embedded", "the 'llamacpp' extra: pip install 'wyoming-persona[llamacpp]'"),
}
"""Backend name -> (module in this package, what to install when its import fails)."""


async def create_backend(settings: BackendSettings) -> ChatBackend:
    """Build the configured backend; `auto` uses Ollama if it answers, else the embedded model."""
    kind = settings.kind
    if kind is BackendKind.AUTO:
        host = settings.ollama.host
        if await probe_ollama(host, settings.probe_timeout):
            _LOGGER.info("Backend auto: Ollama answers at %s, using it", host)
            kind = BackendKind.OLLAMA
        else:
            _LOGGER.info("Backend auto: no Ollama at %s, using the embedded model", host)
            kind = BackendKind.EMBEDDED
    module_name, install = BACKENDS[kind]
    try:
        module = importlib.import_module(module_name, __package__)
    except ImportError as err:
        raise BackendError(f"the {kind} backend needs {install} ({err})") from err
    return await module.create(settings)


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
