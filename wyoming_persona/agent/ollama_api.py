"""The persona service speaking Ollama's HTTP API, so Home Assistant's Ollama integration can use it.

HA's `ollama` agent streams the reply into the Assist pipeline (TTS starts at the first sentence)
and runs the home's tools itself; the Wyoming handle waits for the whole reply. Model `persona`
is whichever persona is active; each persona id (`pirate`) pins that persona (and never switches
the active one). Replies come from the same PersonaChat (backend, shaping, leak guard, fallback line)
as the Wyoming handle.

It listens on 127.0.0.1 unless told otherwise. An optional bearer token (HA's Ollama integration
sends one as its "API key" since spring 2026; older versions send none) guards every endpoint.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .. import __version__
from ..access import is_loopback, token_matches
from ..home.request import Form, utterance_form
from ..personas import Persona
from .backends import ToolCall
from .chat import ClientTurn, OnChunk, OnToolCalls, PersonaChat, respond_turn
from .commands import pinned_reply, recognize
from .ha_context import device_context
from .ha_shape import ShapeKeeper, stable_tools
from .ollama_wire import (
    ChatCall,
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
DEFAULT_HOST = "127.0.0.1"
TOKEN_ENV = "WYOMING_PERSONA_OLLAMA_API_TOKEN"
PERSONA_MODEL = "persona"
"""The model that follows the active persona."""
OLLAMA_VERSION = "0.12.0"
"""The Ollama API version we answer like (clients may check it)."""
MAX_BODY = 1024 * 1024
"""Largest request body. HA's Assist turn (its prompt for bench/tool_calls.py's home with 7 entities,
10 tools, 20 exchanges of history) is 6-9 KB of JSON, plus about 60 bytes per exposed entity; a
128k-token context window, the largest a backend here commonly has, holds about 0.5 MB of text. So
1 MiB refuses nothing a model could read, and a client cannot queue megabytes of prompt in front of
the single LLM worker."""
NDJSON = "application/x-ndjson"

CHAT = web.AppKey("chat", PersonaChat)
STARTED = web.AppKey("started", str)
TOKEN = web.AppKey("token", str)
"""The bearer token every request must carry; empty: none needed."""
SHAPES = web.AppKey("shapes", ShapeKeeper)
"""Remembers HA's prompt shape for the next start (agent/ha_shape.py); absent: not remembered."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ModelNotFound(LookupError):
    def __init__(self, model: str) -> None:
        super().__init__(f"model '{model}' not found")


class ExposureError(ValueError):
    """The API would listen beyond this machine without a token, and nobody said that is safe."""


def check_exposure(host: str, token: str | None, unauthenticated: bool = False) -> None:
    """Refuse a non-loopback address without a token, unless the caller says the network is trusted
    (the add-on: its port stays on HA's internal network, and HA's Ollama integration may send none)."""
    if host and is_loopback(host):
        return
    if not token and not unauthenticated:
        raise ExposureError(
            f"--ollama-api-host {host or '(every address)'} is not a loopback address: set "
            f"--ollama-api-token (or {TOKEN_ENV}), or pass --ollama-api-unauthenticated if only "
            "trusted machines can reach that address"
        )


def make_app(
    chat: PersonaChat, token: str | None = None, shapes: ShapeKeeper | None = None
) -> web.Application:
    app = web.Application(middlewares=[_error_middleware, _auth_middleware], client_max_size=MAX_BODY)
    app[CHAT] = chat
    app[TOKEN] = token or ""
    if shapes is not None:
        app[SHAPES] = shapes
    app[STARTED] = timestamp()
    app.router.add_get("/", root)
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/tags", tags)
    app.router.add_get("/api/ps", running)
    app.router.add_post("/api/show", show)
    app.router.add_post("/api/pull", pull)
    app.router.add_post("/api/chat", chat_view)
    return app


async def start(
    chat: PersonaChat, host: str, port: int, token: str | None = None, shapes: ShapeKeeper | None = None
) -> web.AppRunner:
    """Serve the API beside the Wyoming server; the caller cleans the runner up.

    Handler cancellation is on, so a client that hangs up stops its reply (and the generation)
    even while the model is still reading the prompt and nothing is being written.
    """
    runner = web.AppRunner(make_app(chat, token, shapes), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    _LOGGER.info(
        "Ollama-compatible API on http://%s:%d (model %r follows the active persona; %s)",
        host,
        bound_port(runner),
        PERSONA_MODEL,
        "bearer token required" if token else "no token",
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
        elif err.status == 413:
            message = _too_large()
        return error_response(err.status, message)
    except Exception:  # the one boundary: log it, answer JSON, keep serving
        _LOGGER.exception("Unexpected error in %s %s", request.method, request.path)
        return error_response(500, "internal error; see the persona service log")


def _too_large() -> str:
    return f"request body larger than {MAX_BODY} bytes ({MAX_BODY / 2**20:g} MiB), the limit of this API"


@web.middleware
async def _auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With a token every request needs it (401 otherwise); a declared body over the limit is refused
    (413) before it is read, and a body without a length is cut at the limit while it is read."""
    token = request.app[TOKEN]
    if token and not token_matches(request.headers.get("Authorization", ""), token):
        response = error_response(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
        response.headers["WWW-Authenticate"] = 'Bearer realm="wyoming-persona"'
        return response
    if request.content_length is not None and request.content_length > MAX_BODY:
        return error_response(413, _too_large())
    return await handler(request)


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
    tools = stable_tools(call.tools)
    turn = ClientTurn(history, persona_id, device_context(system), tools)
    _LOGGER.debug(
        "Chat %s: %d messages, %d tools, last %r", call.model, len(history), len(call.tools), history[-1]
    )
    shapes = request.app.get(SHAPES)
    try:
        answered = turn if shapes is None else shapes.turn_to_answer(call.model, turn)
        return await _chat_reply(request, chat, call, _remark_without_tools(answered))
    finally:  # after the turn: its opening is processed now, and ahead at every start
        if shapes is not None:
            shapes.note(call.model, turn.context, tools)


def _remark_without_tools(turn: ClientTurn) -> ClientTurn:
    """A remark ("my neighbour's garage door is open again") is talked about by the persona alone,
    without HA's context and tools: it is never acted on (home/request.py). Under HA's prompt qwen-1.5b
    said "The garage door is now closed." to it, and named tools aloud."""
    last = turn.messages[-1] if turn.messages else None
    if not turn.tools or last is None or last["role"] != "user":
        return turn
    if utterance_form(last["content"]).form is not Form.OTHER:
        return turn
    _LOGGER.debug("Neither a request nor a question, answered without tools: %r", last["content"])
    return ClientTurn(turn.messages, turn.persona_id)


async def _chat_reply(
    request: web.Request, chat: PersonaChat, call: ChatCall, turn: ClientTurn
) -> web.StreamResponse:
    if call.stream:
        return await _stream_reply(request, chat, call.model, turn)
    started = time.perf_counter_ns()
    pieces: list[str] = []
    calls: list[ToolCall] = []

    async def on_chunk(text: str) -> None:
        pieces.append(text)

    async def on_tool_calls(found: tuple[ToolCall, ...]) -> None:
        calls.extend(found)

    await _respond(chat, turn, on_chunk, on_tool_calls)
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
        await _respond(chat, turn, on_chunk, on_tool_calls)
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


async def _respond(
    chat: PersonaChat, turn: ClientTurn, on_chunk: OnChunk, on_tool_calls: OnToolCalls
) -> None:
    """`respond_turn`, except that a pinned model answers a persona switch without making it."""
    refusal = pinned_switch_reply(chat, turn)
    if refusal is not None:
        await on_chunk(refusal)
        return
    await respond_turn(chat, turn, on_chunk, on_tool_calls)


def pinned_switch_reply(chat: PersonaChat, turn: ClientTurn) -> str | None:
    """What a pinned model (`pirate`) says to "switch to the butler", or None for any other turn.

    A pinned model is one persona for good: a switch through it would change the persona of every
    other agent and satellite while this one kept answering as before. The `persona` model switches.
    """
    if turn.persona_id is None or not turn.messages or turn.messages[-1]["role"] != "user":
        return None
    manager = chat.manager
    command = recognize(turn.messages[-1]["content"], manager.personas.values())
    reply = pinned_reply(command, manager.get(turn.persona_id))
    if reply is not None:
        _LOGGER.debug("Pinned model %s: a switch answered, not made", turn.persona_id)
    return reply
