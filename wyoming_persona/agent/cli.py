"""`wyoming-persona persona`: the persona LLM as a Wyoming handle server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from ..home.control import HomeControl
from ..home.link import HomeLink
from ..home.model_intents import ModelIntents
from ..home.options import HomeOptions, add_home_arguments, home_options
from ..home.recognizer import IntentRecognizer
from ..options import add_persona_arguments, add_server_arguments, metrics_options, persona_manager
from ..personas import Persona, PersonaLoadError, PersonaManager, persona_messages
from ..pypi_fetch import DEFAULT_INDEX, Index
from ..service_metrics import MetricsOptions
from ..speculate import check_uri
from .backends.base import BackendError, ChatBackend, ChatRequest
from .backends.settings import (
    DEFAULT_N_CTX,
    DEFAULT_OLLAMA_HOST,
    DEFAULT_OLLAMA_MODEL,
    DEFAULT_OPENAI_BASE_URL,
    DEFAULT_OPENAI_MODEL,
    DEFAULT_PROMPT_CACHE_MIB,
    BackendKind,
    BackendSettings,
    EmbeddedSettings,
    OllamaSettings,
    OpenAISettings,
)
from .chat import DEFAULT_MAX_REPLY_TOKENS, DEFAULT_REPLY_TIMEOUT, DEFAULT_TIMEOUT, ChatSettings, PersonaChat
from .ha_shape import ShapeKeeper
from .history import DEFAULT_MAX_TURNS, DEFAULT_TTL, HistorySettings
from .models import (
    CACHE_DIR_ENV,
    CATALOG,
    DEFAULT_MODEL,
    ModelError,
    default_cache_dir,
    is_embedded_only,
    lookup,
)
from .ollama_api import DEFAULT_HOST as DEFAULT_OLLAMA_API_HOST
from .ollama_api import DEFAULT_PORT as DEFAULT_OLLAMA_API_PORT
from .ollama_api import TOKEN_ENV as OLLAMA_API_TOKEN_ENV
from .ollama_api import ExposureError, check_exposure
from .ollama_api import start as start_ollama_api
from .pinned import (
    PinnedAgent,
    PinnedError,
    add_pinned_arguments,
    build_pinned_info,
    check_pinned,
    parse_pinned,
    serving_pinned,
)
from .speculation import SpeculationSettings

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceSettings:
    uri: str
    zeroconf: str | None
    backend: BackendSettings
    chat: ChatSettings
    history: HistorySettings
    metrics: MetricsOptions | None = None
    ollama_api_host: str = DEFAULT_OLLAMA_API_HOST
    ollama_api_port: int = 0
    """The Ollama-compatible API's port; 0: off (the command line's default is 10501)."""
    ollama_api_token: str | None = field(default=None, repr=False)
    """Bearer token the Ollama-compatible API requires on every request; None: none."""
    ollama_api_unauthenticated: bool = False
    """Serve the Ollama-compatible API on a non-loopback address without a token (trusted network)."""
    home: HomeOptions = field(default_factory=HomeOptions)
    pinned: tuple[PinnedAgent, ...] = ()
    """More handle endpoints, each answering as one persona (`--pinned-persona`)."""
    speculation: SpeculationSettings | None = field(default_factory=SpeculationSettings)
    """Replies started on the ASR's early transcripts (agent/speculation.py); None: off."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_arguments(parser, "persona")
    add_persona_arguments(parser)
    add_home_arguments(parser)
    add_pinned_arguments(parser)
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

    group = parser.add_argument_group("speculative replies (the ASR's --speculation-uri names this service)")
    group.add_argument(
        "--no-speculation",
        action="store_true",
        help="ignore the ASR's early transcripts: every reply starts when the client asks",
    )
    group.add_argument(
        "--speculation-tts-uri",
        metavar="URI",
        help="the TTS service (tcp://HOST:PORT) that synthesizes a speculative reply ahead, so Home "
        "Assistant's synthesize is answered from its speech cache (default: not ahead)",
    )

    group = parser.add_argument_group("ollama")
    group.add_argument(
        "--ollama-host",
        default=os.environ.get("OLLAMA_HOST", DEFAULT_OLLAMA_HOST),
        help="Ollama server (env OLLAMA_HOST; default: %(default)s)",
    )
    group.add_argument("--ollama-model", default=DEFAULT_OLLAMA_MODEL, help="default: %(default)s")
    group.add_argument("--keep-alive", default="5m", help="how long Ollama keeps the model loaded")
    group.add_argument("--num-ctx", type=int, default=None, help="Ollama context size")

    group = parser.add_argument_group("openai-compatible")
    group.add_argument("--openai-base-url", default=DEFAULT_OPENAI_BASE_URL, help="default: %(default)s")
    group.add_argument("--openai-model", default=DEFAULT_OPENAI_MODEL, help="default: %(default)s")
    group.add_argument(
        "--openai-api-key", default=os.environ.get("OPENAI_API_KEY"), help="API key (env OPENAI_API_KEY)"
    )

    group = parser.add_argument_group("Ollama-compatible API (for Home Assistant's Ollama integration)")
    group.add_argument(
        "--ollama-api-port",
        type=int,
        default=DEFAULT_OLLAMA_API_PORT,
        help="port of the Ollama-compatible chat API; 0 turns it off (default: %(default)s)",
    )
    group.add_argument(
        "--ollama-api-host",
        default=DEFAULT_OLLAMA_API_HOST,
        help="address it listens on; any other than loopback needs --ollama-api-token or "
        "--ollama-api-unauthenticated (default: %(default)s)",
    )
    group.add_argument(
        "--ollama-api-token",
        default=os.environ.get(OLLAMA_API_TOKEN_ENV) or None,
        help=f"bearer token required on every request, HA's Ollama 'API key' (env {OLLAMA_API_TOKEN_ENV})",
    )
    group.add_argument(
        "--ollama-api-unauthenticated",
        action="store_true",
        help="allow a non-loopback --ollama-api-host without a token: only on a network where every "
        "machine may use it (the add-on's internal network)",
    )

    group = parser.add_argument_group("embedded llama.cpp")
    which = group.add_mutually_exclusive_group()
    which.add_argument(
        "--model",
        type=_model_choice,
        default=None,
        help=f"{' | '.join(CATALOG)} (PyPI model packages) or a GGUF file (default: {DEFAULT_MODEL})",
    )
    which.add_argument("--model-path", type=Path, default=None, help="a GGUF file (same as --model PATH)")
    group.add_argument(
        "--model-cache-dir",
        type=Path,
        default=None,
        help=f"where split models are joined once (env {CACHE_DIR_ENV}; default: "
        "$XDG_CACHE_HOME or ~/.cache, then wyoming-persona/models)",
    )
    group.add_argument(
        "--download-models",
        nargs="?",
        const=DEFAULT_INDEX,
        default=None,
        metavar="INDEX_URL",
        help="download a catalog model whose packages are not installed into the model cache dir, "
        f"checked against pinned sha256 (the add-on; default index {DEFAULT_INDEX}, PEP 691 JSON)",
    )
    group.add_argument(
        "--n-threads", type=int, default=None, help="llama.cpp threads (default: half the cores)"
    )
    group.add_argument("--n-ctx", type=int, default=DEFAULT_N_CTX, help="context size (default: %(default)s)")
    group.add_argument(
        "--repeat-penalty", type=float, default=1.15, help="penalty on repeated tokens (default: %(default)s)"
    )
    group.add_argument(
        "--prompt-cache-mib",
        type=float,
        default=DEFAULT_PROMPT_CACHE_MIB,
        help="MiB per model for processed persona prompts, so a new conversation or a persona switch "
        "does not re-read the prompt; 0 disables (default: %(default)s)",
    )
    group.add_argument(
        "--prompt-cache-dir",
        type=Path,
        default=None,
        help="where processed persona prompts are saved, so a restart does not process them again "
        "(default: prompts/ in the model cache dir)",
    )
    group.add_argument(
        "--no-prompt-files", action="store_true", help="keep processed persona prompts in memory only"
    )


def _prompt_dir(args: argparse.Namespace) -> Path:
    return args.prompt_cache_dir or (args.model_cache_dir or default_cache_dir()) / "prompts"


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
            model=args.model,
            cache_dir=args.model_cache_dir,
            model_index=Index(args.download_models) if args.download_models else None,
            n_ctx=args.n_ctx,
            repeat_penalty=args.repeat_penalty,
            prompt_cache_mib=args.prompt_cache_mib,
            prompt_cache_dir=None if args.no_prompt_files else _prompt_dir(args),
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
        metrics=metrics_options(args),
        ollama_api_host=args.ollama_api_host,
        ollama_api_port=args.ollama_api_port,
        ollama_api_token=args.ollama_api_token,
        ollama_api_unauthenticated=args.ollama_api_unauthenticated,
        home=home_options(args),
        pinned=parse_pinned(args.pinned_persona, args.uri),
        speculation=None
        if args.no_speculation
        else SpeculationSettings(
            tts_uri=check_uri(args.speculation_tts_uri, "--speculation-tts-uri")
            if args.speculation_tts_uri
            else None
        ),
    )


def _model_choice(value: str) -> str:
    """A catalog name or an existing file, checked while parsing (the join itself happens at start)."""
    try:
        lookup(value)
    except ModelError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
    return value


def _keep_alive(value: str) -> str | float:
    """Ollama takes a duration string ("5m") or seconds (-1 keeps the model loaded forever)."""
    try:
        return float(value)
    except ValueError:
        return value


def run(args: argparse.Namespace) -> int:
    """Serve; a start that cannot work (bad personas, no model, port taken) is one `error:` line, exit 1."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        settings = settings_from_args(args)
    except (PinnedError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if settings.ollama_api_port:
        try:
            check_exposure(
                settings.ollama_api_host, settings.ollama_api_token, settings.ollama_api_unauthenticated
            )
        except ExposureError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    try:
        manager = persona_manager(args)
    except PersonaLoadError as err:
        for error in err.errors:
            print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        check_pinned(settings.pinned, manager)
    except PinnedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        asyncio.run(serve_persona(settings, manager))
    except BackendError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # e.g. the port is taken
        _LOGGER.debug("Start failed", exc_info=True)
        print(f"error: cannot serve on {settings.uri}: {err}", file=sys.stderr)
        return 1
    return 0


async def serve_persona(settings: ServiceSettings, manager: PersonaManager) -> None:
    from ..service_metrics import LeakGuardMetrics, ServiceMetrics
    from ..wyoming_server import serve
    from .backends import create_backend
    from .chat import PersonaChat
    from .handler import PersonaEventHandler, build_info
    from .history import ConversationStore
    from .speculation import AheadSpeech, PreemptingBackend, SpeculationGate, Speculator, closing

    backend = await create_backend(settings.backend)
    warming: asyncio.Task | None = None
    speculator: Speculator | None = None
    shapes: ShapeKeeper | None = None
    try:
        personas = _active_first(manager)
        prepare = getattr(backend, "prepare_models", None)  # the embedded backend: personas' llm.model
        if prepare is not None:  # loads the active persona's own model too: nothing loads at a first reply
            await prepare([(str(p.source), p.llm.model) for p in personas])
        else:
            for persona in personas:
                if persona.llm.model and is_embedded_only(persona.llm.model):
                    _LOGGER.info(
                        "%s: llm.model %r is for the embedded backend; %s answers with its own model",
                        persona.source,
                        persona.llm.model,
                        backend.name,
                    )
        warm = getattr(backend, "warm", None)  # the embedded backend: process every persona's prompt
        warming = asyncio.create_task(warm(opening_requests(personas))) if warm is not None else None
        problem = await probe_server(settings.backend)
        if problem is not None:
            _LOGGER.warning(
                "%s; starting anyway: replies are the persona's fallback line until it answers", problem
            )
        gate = SpeculationGate()
        if settings.speculation is not None:  # a real generation stops a speculative one first
            backend = PreemptingBackend(backend, gate)
        home = home_control(settings.home, backend)
        metrics = ServiceMetrics(settings.metrics.service if settings.metrics else "persona")
        chat = PersonaChat(
            manager,
            backend,
            ConversationStore(settings.history),
            settings.chat,
            home,
            settings.home.device_personas,
            LeakGuardMetrics(metrics),
        )
        _LOGGER.info(
            "Persona service: backend %s, %d personas, active %r, timeout %.0fs",
            backend.name,
            len(manager.personas),
            manager.active().id,
            settings.chat.timeout,
        )
        if settings.speculation is not None:
            tts_uri = settings.speculation.tts_uri
            ahead = AheadSpeech(tts_uri, settings.speculation.tts_timeout) if tts_uri else None
            speculator = Speculator(chat, gate, settings.speculation, ahead)
        prompt_dir = settings.backend.embedded.prompt_cache_dir
        if settings.ollama_api_port and warm is not None and prompt_dir is not None:
            shapes = ShapeKeeper(chat, prompt_dir)  # HA's prompt for the Ollama API, processed at start
            shapes.start_warming(after=warming)
        info = functools.partial(build_info, manager, backend.name, home is not None)
        factory = functools.partial(PersonaEventHandler, info=info, chat=chat, speculator=speculator)
        async with manager.watching(), home.running() if home else contextlib.nullcontext():
            api = await _start_ollama_api(chat, settings, shapes) if settings.ollama_api_port else None
            pinned_info = functools.partial(build_pinned_info, manager, backend.name, home is not None)
            try:
                async with serving_pinned(
                    settings.pinned, chat, pinned_info, metrics, settings.zeroconf, speculator
                ):
                    await serve(settings.uri, factory, settings.zeroconf, settings.metrics, metrics)
            finally:
                if api is not None:
                    await api.cleanup()
    finally:
        if warming is not None:
            warming.cancel()
        await closing(speculator)
        if shapes is not None:
            await shapes.close()
        await backend.close()


def home_control(options: HomeOptions, backend: ChatBackend) -> HomeControl | None:
    """Home control when HA can be reached with a token; the templates load now (about 0.1 s)."""
    if options.link is None:
        _LOGGER.info("Home control off: no Home Assistant token (--ha-token); home commands go to the LLM")
        return None
    try:
        recognizer = IntentRecognizer()
    except ImportError as err:  # installed without the `home` extra
        _LOGGER.error("Home control off: %s (install wyoming-persona[home])", err)
        return None
    _LOGGER.info("Home control through Home Assistant at %s", options.link.url)
    model = ModelIntents(backend) if options.ask_llm else None
    return HomeControl(HomeLink(options.link), recognizer, model)


async def _start_ollama_api(
    chat: PersonaChat, settings: ServiceSettings, shapes: ShapeKeeper | None = None
) -> web.AppRunner | None:
    """The Ollama-compatible API beside the Wyoming server; a taken port is a warning, not the end:
    the Wyoming agent is the service's main job (and a second service on one machine, a test or a
    harness, would find the default port taken)."""
    host, port = settings.ollama_api_host, settings.ollama_api_port
    try:
        return await start_ollama_api(chat, host, port, settings.ollama_api_token, shapes)
    except OSError as err:
        _LOGGER.warning(
            "Ollama-compatible API not started: cannot listen on %s:%d (%s); --ollama-api-port picks "
            "another port, 0 turns it off",
            host,
            port,
            err.strerror or err,
        )
        return None


def _active_first(manager: PersonaManager) -> list[Persona]:
    active = manager.active().id
    return sorted(manager.personas.values(), key=lambda persona: persona.id != active)


def opening_requests(personas: list[Persona]) -> list[ChatRequest]:
    """A new conversation's request per persona, its question left open: the backend processes all
    before the question (system prompt and example turns) ahead of time, in the background."""
    return [
        ChatRequest(messages=(*persona_messages(p), {"role": "user", "content": "?"}), model=p.llm.model)
        for p in personas
    ]


async def probe_server(settings: BackendSettings) -> str | None:
    """Why the configured LLM server does not answer now, or None (also for the embedded model).

    A server that is down at start is not fatal: Home Assistant starts add-ons in any order and
    Ollama may live on a machine that boots later. Each reply connects anew, so the service
    recovers by itself; the warning says why the first replies are the fallback line.
    """
    import aiohttp

    from .backends import probe_ollama

    if settings.kind is BackendKind.OLLAMA:
        host = settings.ollama.host
        if await probe_ollama(host, settings.probe_timeout):
            return None
        return f"Ollama at {host} does not answer"
    if settings.kind is not BackendKind.OPENAI:
        return None
    url = settings.openai.base_url.rstrip("/") + "/models"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=settings.probe_timeout)) as session,
            session.get(url) as response,
        ):
            _LOGGER.debug("OpenAI-compatible probe %s: HTTP %s", url, response.status)
            return None  # any HTTP answer (even 401 or 404) means the server is there
    except (aiohttp.ClientError, TimeoutError) as err:
        reason = err or type(err).__name__
        return f"the OpenAI-compatible server at {settings.openai.base_url} does not answer ({reason})"
