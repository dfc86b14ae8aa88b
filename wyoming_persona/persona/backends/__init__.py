"""Chat backends (Ollama, OpenAI-compatible, embedded llama.cpp) and the `auto` choice between them."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from enum import StrEnum

from .base import BackendError, ChatBackend, ChatMessage, ChatRequest, Delta
from .embedded import EmbeddedSettings, LlamaCppChatBackend
from .ollama import OllamaChatBackend, OllamaSettings, probe_ollama
from .openai import OpenAIChatBackend, OpenAISettings

_LOGGER = logging.getLogger(__name__)

__all__ = [
    "BackendError",
    "BackendKind",
    "BackendSettings",
    "ChatBackend",
    "ChatMessage",
    "ChatRequest",
    "Delta",
    "EmbeddedSettings",
    "LlamaCppChatBackend",
    "OllamaChatBackend",
    "OllamaSettings",
    "OpenAIChatBackend",
    "OpenAISettings",
    "create_backend",
    "probe_ollama",
]


class BackendKind(StrEnum):
    AUTO = "auto"
    OLLAMA = "ollama"
    OPENAI = "openai"
    EMBEDDED = "embedded"


@dataclass(frozen=True)
class BackendSettings:
    kind: BackendKind = BackendKind.AUTO
    ollama: OllamaSettings = field(default_factory=OllamaSettings)
    openai: OpenAISettings = field(default_factory=OpenAISettings)
    embedded: EmbeddedSettings = field(default_factory=EmbeddedSettings)
    probe_timeout: float = 2.0


async def create_backend(settings: BackendSettings) -> ChatBackend:
    """Build the configured backend; `auto` uses Ollama if it answers, else the embedded model."""
    kind = settings.kind
    if kind is BackendKind.AUTO:
        if await probe_ollama(settings.ollama.host, settings.probe_timeout):
            _LOGGER.info("Backend auto: Ollama answers at %s, using it", settings.ollama.host)
            kind = BackendKind.OLLAMA
        else:
            _LOGGER.info("Backend auto: no Ollama at %s, using the embedded model", settings.ollama.host)
            kind = BackendKind.EMBEDDED
    if kind is BackendKind.OLLAMA:
        return OllamaChatBackend(settings.ollama)
    if kind is BackendKind.OPENAI:
        return OpenAIChatBackend(settings.openai)
    return await asyncio.to_thread(LlamaCppChatBackend.load, settings.embedded)
