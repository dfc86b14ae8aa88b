"""The persona service speaking Ollama's HTTP API, so Home Assistant's Ollama integration can use it.

HA's `ollama` agent streams the reply into the Assist pipeline (TTS starts at the first sentence)
and runs the home's tools itself; the Wyoming handle waits for the whole reply. Model `persona`
is whichever persona is active; each persona id (`pirate`) pins that persona. Replies come from the
same PersonaChat (backend, shaping, leak guard, fallback line) as the Wyoming handle.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .. import __version__
from ..personas import Persona
from .backends import ToolCall
from .chat import ClientTurn, PersonaChat, respond_turn
from .ha_context import device_context
from .ollama_wire import (
    WireError,
    base_name,
    chat_part,
    decode_body,
    model_entry,
    ndjson,
    parse_chat,
    parse_model_call,
    show_reply,
    timestamp,
)

_LOGGER = logging.getLogger(__name__)

DEFAULT_PORT = 10501
DEFAULT_HOST = "0.0.0.0"
PERSONA_MODEL = "persona"
"""The model that follows the active persona."""
OLLAMA_VERSION = "0.12.0"
"""The Ollama API version we answer like (clients may check it)."""
MAX_BODY = 4 * 1024 * 1024
NDJSON = "application/x-ndjson"

CHAT = web.AppKey("chat", PersonaChat)
STARTED = web.AppKey("started", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ModelNotFound(LookupError):
    def __init__(self, model: str) -> None:
        super().__init__(f"model '{model}' not found")


def make_app(chat: PersonaChat) -> web.Application:
    app = web.Application(middlewares=[_error_middleware], client_max_size=MAX_BODY)
    app[CHAT] = chat
    app[STARTED] = timestamp()
    app.router.add_get("/", root)
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/tags", tags)
    app.router.add_get("/api/ps", running)
    app.router.add_post("/api/show", show)
    app.router.add_post("/api/pull", pull)
    app.router.add_post("/api/chat", chat_view)
    return app


async def start(chat: PersonaChat, host: str, port: int) -> web.AppRunner:
    """Serve the API beside the Wyoming server; the caller cleans the runner up.

    Handler cancellation is on, so a client that hangs up stops its reply (and the generation)
    even while the model is still reading the prompt and nothing is being written.
    """
    runner = web.AppRunner(make_app(chat), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    _LOGGER.info(
        "Ollama-compatible API on http://%s:%d (model %r follows the active persona)",
        host,
        bound_port(runner),
        PERSONA_MODEL,
    )
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port the API listens on (the one the OS chose for port 0)."""
    return runner.addresses[0][1]


# -- errors -------------------------------------------------------------------------------------
def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as Ollama's `{"error": ...}`: bad requests 400, unknown models 404."""
    try:
        return await handler(request)
    except WireError as err:
        _LOGGER.debug("%s %s: bad request: %s", request.method, request.path, err)
        return error_response(400, str(err))
    except ModelNotFound as err:
        return error_response(404, str(err))
    except web.HTTPException as err:
        if err.status < 400:
            raise
        message = err.reason
        if err.status == 404:
            message = f"no endpoint {request.path}"
        elif err.status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        return error_response(err.status, message)
    except Exception:  # the one boundary: log it, answer JSON, keep serving
        _LOGGER.exception("Unexpected error in %s %s", request.method, request.path)
        return error_response(500, "internal error; see the persona service log")


# -- models -------------------------------------------------------------------------------------
def _models(chat: PersonaChat) -> list[tuple[str, Persona]]:
    """(model name, persona answering now): `persona` first, then each persona by id."""
    manager = chat.manager
    active = manager.active()
    return [(PERSONA_MODEL, active), *((p.id, p) for p in manager.personas.values() if p.id != PERSONA_MODEL)]


def resolve(chat: PersonaChat, model: str) -> str | None:
    """The persona id a model name pins, None for `persona` (the active one); else ModelNotFound."""
    name = base_name(model)
    if name == PERSONA_MODEL:
        return None
    if name is None or name not in chat.manager.personas:
        raise ModelNotFound(model)
    return name


async def _json(request: web.Request) -> dict[str, Any]:
    return decode_body(await request.read())


# -- routes -------------------------------------------------------------------------------------
async def root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")


async def version(request: web.Request) -> web.Response:
    return web.json_response({"version": OLLAMA_VERSION, "server": f"wyoming-persona {__version__}"})


async def tags(request: web.Request) -> web.Response:
    chat, started = request.app[CHAT], request.app[STARTED]
    return web.json_response({"models": [model_entry(n, p, started) for n, p in _models(chat)]})


async def running(request: web.Request) -> web.Response:
    """`/api/ps`: every persona is ready (the backend holds the model)."""
    chat = request.app[CHAT]
    models = []
    for name, persona in _models(chat):
        entry = model_entry(name, persona, request.app[STARTED])
        del entry["modified_at"]
        models.append({**entry, "expires_at": "2318-01-01T00:00:00Z", "size_vram": 0})
    return web.json_response({"models": models})


async def show(request: web.Request) -> web.Response:
    call = parse_model_call(await _json(request))
    chat = request.app[CHAT]
    persona_id = resolve(chat, call.model)
    persona = chat.manager.get(persona_id) if persona_id else chat.manager.active()
    name = persona_id or PERSONA_MODEL
    return web.json_response(show_reply(name, persona, request.app[STARTED], chat.backend.name))


async def pull(request: web.Request) -> web.StreamResponse:
    """Every persona is there already: a pull of one of ours succeeds at once."""
    call = parse_model_call(await _json(request))
    resolve(request.app[CHAT], call.model)
    if not call.stream:
        return web.json_response({"status": "success"})
    response = web.StreamResponse(headers={"Content-Type": NDJSON})
    await response.prepare(request)
    for status in ("pulling manifest", "verifying sha256 digest", "writing manifest", "success"):
        await response.write(ndjson({"status": status}))
    await response.write_eof()
    return response


async def chat_view(request: web.Request) -> web.StreamResponse:
    call = parse_chat(await _json(request))
    chat = request.app[CHAT]
    persona_id = resolve(chat, call.model)
    system = [m["content"] for m in call.messages if m["role"] == "system"]
    history = tuple(m for m in call.messages if m["role"] != "system")
    if not history:  # Ollama loads the model and answers at once
        return web.json_response(chat_part(call.model, done=True, done_reason="load"))
    turn = ClientTurn(history, persona_id, device_context(system), call.tools)
    _LOGGER.debug(
        "Chat %s: %d messages, %d tools, last %r", call.model, len(history), len(call.tools), history[-1]
    )
    if call.stream:
        return await _stream_reply(request, chat, call.model, turn)
    started = time.perf_counter_ns()
    pieces: list[str] = []
    calls: list[ToolCall] = []

    async def on_chunk(text: str) -> None:
        pieces.append(text)

    async def on_tool_calls(found: tuple[ToolCall, ...]) -> None:
        calls.extend(found)

    await respond_turn(chat, turn, on_chunk, on_tool_calls)
    duration = time.perf_counter_ns() - started
    part = chat_part(call.model, "".join(pieces), calls, done=True, total_duration=duration)
    return web.json_response(part)


async def _stream_reply(
    request: web.Request, chat: PersonaChat, model: str, turn: ClientTurn
) -> web.StreamResponse:
    """NDJSON: a line per speakable chunk and per batch of tool calls, then the `done` line.

    A failed write (the client hung up) ends the reply; leaving `respond_turn` closes the backend
    stream, which stops the generation.
    """
    started = time.perf_counter_ns()
    response = web.StreamResponse(headers={"Content-Type": NDJSON})
    await response.prepare(request)

    async def on_chunk(text: str) -> None:
        await response.write(ndjson(chat_part(model, text)))

    async def on_tool_calls(found: tuple[ToolCall, ...]) -> None:
        await response.write(ndjson(chat_part(model, tool_calls=found)))

    try:
        await respond_turn(chat, turn, on_chunk, on_tool_calls)
        duration = time.perf_counter_ns() - started
        await response.write(ndjson(chat_part(model, done=True, total_duration=duration)))
        await response.write_eof()
    except ConnectionError as err:
        _LOGGER.debug("Chat %s: the client went away during the reply: %s", model, err)
    except Exception as err:  # the stream's boundary: headers are sent, so the error goes in a line
        _LOGGER.exception("Chat %s: reply failed", model)
        with contextlib.suppress(ConnectionError):
            await response.write(ndjson({"error": f"internal error while answering: {err}"}))
            await response.write_eof()
    return response
