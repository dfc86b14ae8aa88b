"""The persona studio: a page to list, switch, edit, hear, try, create, duplicate, import, export and
delete personas, and the JSON endpoints behind it (`/api/studio/...`).

Every write is validated by the persona loader first (its errors come back with the field they are
about) and goes to disk atomically, changing only what changed in the user's file (personas/edit.py);
the services pick the file up as they pick up any edit. A write needs a studio session (session.py).
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from aiohttp import web

from ..healthcheck import describe
from ..personas import Persona, PersonaError
from ..personas.edit import EditResult, apply_changes, changed_values, spec_json
from ..personas.files import PersonaFileError, PersonaFiles, PersonaText, check_id
from ..personas.loader import MAX_FILE_BYTES, check_json, parse_persona
from ..personas.model import PersonaSpec, PromptSpec, VoiceSpec
from ..pins import agent_name
from .keys import INGRESS, MANAGER, SETTINGS, STUDIO
from .lookup import option_labels
from .session import (
    ACCESS,
    COOKIE,
    INGRESS_SESSION,
    Access,
    Sessions,
    loopback_host,
    new_session,
    session_problem,
)
from .speech import SpeechError, TrialResult, preview, trial_turn

_LOGGER = logging.getLogger(__name__)

ASSETS = {"studio.js": "text/javascript", "studio.css": "text/css"}
NDJSON = "application/x-ndjson"
MAX_MESSAGE_CHARS = 2000
"""The longest message the studio's chat sends (a spoken turn is a sentence or two)."""
MAX_PREVIEW_CHARS = 1000
MAX_CONVERSATION_ID_CHARS = 100
PREVIEW_TEXT = "Hello! This is how I sound."
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self' blob: data:; connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; "
        "form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class Studio:
    """What the API port and the ingress port share: the session secret, one lock for writes, and
    the page's files (read once from the package)."""

    sessions: Sessions = field(default_factory=Sessions)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _assets: dict[str, bytes] = field(default_factory=dict)

    def asset(self, name: str) -> bytes:
        if name not in self._assets:
            self._assets[name] = files(__package__).joinpath("static", name).read_bytes()
        return self._assets[name]


class StudioError(Exception):
    """An answer other than 2xx: `errors` are shown at the fields they name (`{field, message, line,
    column}`), the message above the form."""

    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []

    def response(self) -> web.Response:
        body = {"error": self.message, "status": self.status, "errors": self.errors}
        return web.json_response(body, status=self.status)


def field_error(name: str, message: str) -> dict[str, Any]:
    return {"field": name, "message": message, "line": None, "column": None}


def persona_error(error: PersonaError) -> dict[str, Any]:
    return {"field": error.field, "message": error.message, "line": error.line, "column": error.column}


def install(app: web.Application) -> None:
    """Add the page and the studio's endpoints to the API's application."""
    app.router.add_get("/", page)
    app.router.add_get("/studio/{name}", asset)
    app.router.add_get("/api/studio", state)
    app.router.add_get("/api/studio/voices", voices)
    app.router.add_post("/api/studio/personas", create_persona)
    app.router.add_get("/api/studio/personas/{persona_id}", read_persona)
    app.router.add_put("/api/studio/personas/{persona_id}", save_persona)
    app.router.add_delete("/api/studio/personas/{persona_id}", delete_persona)
    app.router.add_post("/api/studio/validate", validate_draft)
    app.router.add_post("/api/studio/preview", preview_voice)
    app.router.add_post("/api/studio/chat", chat)


def _guarded(view):
    """StudioError raised in a view becomes its JSON answer."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await view(request)
        except StudioError as err:
            return err.response()

    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    return wrapper


def _reader(request: web.Request) -> None:
    """A loopback request must name this machine in its Host: a rebound DNS name reads nothing."""
    if request[ACCESS] is Access.LOCAL and not loopback_host(request):
        raise StudioError(
            403, f"Host {request.host!r} is not this machine: open the studio at http://127.0.0.1"
        )


def _writer(request: web.Request) -> None:
    problem = session_problem(request, request.app[STUDIO].sessions)
    if problem is not None:
        raise StudioError(403, problem)


def _mode(request: web.Request) -> str:
    if request.app[INGRESS]:
        return "ingress"
    return "token" if request.app[SETTINGS].token else "session"


# -- the page -------------------------------------------------------------------------------------
@_guarded
async def page(request: web.Request) -> web.Response:
    """The studio. Relative URLs only, so it works at / and behind HA's ingress path alike."""
    _reader(request)
    studio = request.app[STUDIO]
    mode = _mode(request)
    session = None
    token = ""
    if mode == "ingress":
        token = studio.sessions.token(INGRESS_SESSION)
    elif mode == "session":
        session = request.cookies.get(COOKIE) or new_session()
        token = studio.sessions.token(session)
    body = studio.asset("index.html").decode()
    body = body.replace("{{mode}}", html.escape(mode)).replace("{{session}}", html.escape(token))
    response = web.Response(text=body, content_type="text/html", headers=SECURITY_HEADERS)
    if session is not None:
        response.set_cookie(COOKIE, session, httponly=True, samesite="Strict", path="/")
    return response


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ASSETS:
        return web.json_response({"error": f"no studio file {name}", "status": 404}, status=404)
    body = request.app[STUDIO].asset(name)
    return web.Response(body=body, content_type=ASSETS[name], headers=SECURITY_HEADERS)


# -- reading --------------------------------------------------------------------------------------
def _agents(request: web.Request) -> list[dict[str, Any]]:
    """Which Wyoming agent answers as whom: the main one follows the active persona."""
    settings = request.app[SETTINGS]
    personas = request.app[MANAGER].personas
    agents: list[dict[str, Any]] = [
        {
            "persona_id": None,
            "name": "wyoming-persona",
            "uri": settings.service_uri("persona"),
            "port": None,
            "voice": "active",
        }
    ]
    for pin in settings.pinned:
        persona = personas.get(pin.persona_id)
        agents.append(
            {
                "persona_id": pin.persona_id,
                "name": agent_name(persona.name if persona else pin.persona_id),
                "uri": pin.uri,
                "port": pin.port,
                "voice": pin.persona_id,
            }
        )
    return agents


def _summary(persona: Persona, active_id: str, label: str, agents: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": persona.id,
        "name": persona.name,
        "label": label,
        "description": persona.spec.description,
        "active": persona.id == active_id,
        "voice": {"model": persona.voice.model, "speed": persona.voice.speed, "pitch": persona.voice.pitch},
        "agents": [agent for agent in agents if agent["persona_id"] == persona.id],
    }


@_guarded
async def state(request: web.Request) -> web.Response:
    """Everything the list shows: personas, the active one, the agents, the folder's errors."""
    _reader(request)
    manager = request.app[MANAGER]
    settings = request.app[SETTINGS]
    active = await manager.current()
    personas = manager.personas
    labels = option_labels(personas)
    agents = _agents(request)
    return web.json_response(
        {
            "active": active.id,
            "personas": [_summary(p, active.id, labels[p.id], agents) for p in personas.values()],
            "agents": agents,
            "folder_errors": [_folder_error(e) for e in manager.last_errors],
            "max_file_bytes": MAX_FILE_BYTES,
            "services": {name: settings.service_uri(name) is not None for name in ("tts", "persona")},
            "mode": _mode(request),
        }
    )


def _folder_error(error: PersonaError) -> dict[str, Any]:
    name = Path(error.path).name
    return {
        **persona_error(error),
        "file": name,
        "text": f"{name}:{error.line}:{error.column}: {error.field}: {error.message}",
    }


@_guarded
async def voices(request: web.Request) -> web.Response:
    """The Piper voices the TTS service has (for the voice menu), asked with `describe`."""
    _reader(request)
    settings = request.app[SETTINGS]
    personas = request.app[MANAGER].personas
    known = sorted({persona.voice.model for persona in personas.values()})
    uri = settings.service_uri("tts")
    if uri is None:
        return web.json_response({"voices": known, "error": "no TTS service is configured (--studio-tts)"})
    try:
        async with asyncio.timeout(max(settings.health_timeout, 5.0)):
            info = await describe(uri)
    except (OSError, ValueError, TimeoutError) as err:
        return web.json_response(
            {"voices": known, "error": f"the TTS service at {uri} did not answer: {err}"}
        )
    names = {voice.name for program in info.tts for voice in program.voices or ()}
    plain = names - set(personas) - {"active"}
    return web.json_response({"voices": sorted(plain | set(known)), "error": None})


@_guarded
async def read_persona(request: web.Request) -> web.Response:
    """A persona as the form edits it, its file's text (export) and the version a save names."""
    _reader(request)
    persona_id = request.match_info["persona_id"]
    manager = request.app[MANAGER]
    persona = manager.personas.get(persona_id)
    if persona is None:
        raise StudioError(404, f"unknown persona {persona_id!r}")
    current = await _read(request, persona_id)
    spec, errors = _parse(current.text, persona_id)
    return web.json_response(
        {
            "id": persona_id,
            "persona": spec_json(spec or persona.spec),
            "yaml": current.text,
            "version": current.version,
            "file": current.path.name,
            "file_errors": [persona_error(e) for e in errors],
            "active": persona_id == manager.active().id,
            "agents": [a for a in _agents(request) if a["persona_id"] == persona_id],
        }
    )


async def _read(request: web.Request, persona_id: str) -> PersonaText:
    try:
        return await asyncio.to_thread(_files(request).read, persona_id)
    except PersonaFileError as err:
        raise StudioError(404, err.message) from None


def _files(request: web.Request) -> PersonaFiles:
    return PersonaFiles(request.app[MANAGER].personas_dir)


def _parse(text: str, persona_id: str) -> tuple[PersonaSpec | None, list[PersonaError]]:
    errors: list[PersonaError] = []
    spec = parse_persona(text, Path(f"{persona_id}.yaml"), errors)
    return (None if errors else spec), errors


# -- writing --------------------------------------------------------------------------------------
def _new_persona_json() -> dict[str, Any]:
    """A new persona's starting point: every default, and no name or identity (so any is written)."""
    base = spec_json(PersonaSpec(name="-", prompt=PromptSpec(identity="-")))
    base["name"] = None
    base["prompt"]["identity"] = None
    return base


async def _object_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StudioError(400, f"body is not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise StudioError(400, "body must be a JSON object")
    return body


def _draft(body: Mapping[str, Any], required: bool = True) -> dict[str, Any]:
    draft = body.get("persona")
    if draft is None and not required:
        return {}
    if not isinstance(draft, dict):
        raise StudioError(
            422, "'persona' must be an object", [field_error("(document)", "expected an object")]
        )
    return draft


def _id(value: Any, field_name: str = "id") -> str:
    if not isinstance(value, str):
        raise StudioError(
            422, "the persona needs an id", [field_error(field_name, "the persona needs an id")]
        )
    try:
        return check_id(value)
    except PersonaFileError as err:
        raise StudioError(422, err.message, [field_error(field_name, err.message)]) from None


def _checked_text(result: EditResult, persona_id: str, draft: Mapping[str, Any]) -> None:
    """StudioError(422) with the loader's errors (or the size) at their fields; nothing is written."""
    size = len(result.text.encode("utf-8"))
    if size > MAX_FILE_BYTES:
        where = _largest_field(draft) or "(file)"
        message = f"the persona would be {size:,} bytes; a persona file holds at most {MAX_FILE_BYTES:,}"
        raise StudioError(422, message, [field_error(where, message)])
    _, errors = _parse(result.text, persona_id)
    if errors:
        raise StudioError(
            422,
            f"the persona has {len(errors)} error(s); nothing was saved",
            [persona_error(e) for e in errors],
        )


def _largest_field(value: Any, path: str = "") -> str | None:
    """The path of the longest text in `value`, in the loader's notation (`prompt.style[1]`)."""
    best: tuple[int, str | None] = (-1, None)

    def walk(item: Any, where: str) -> None:
        nonlocal best
        if isinstance(item, Mapping):
            for key, child in item.items():
                walk(child, f"{where}.{key}" if where else str(key))
        elif isinstance(item, list):
            for index, child in enumerate(item):
                walk(child, f"{where}[{index}]")
        else:
            size = len(str(item))
            if size > best[0]:
                best = (size, where)

    walk(value, path)
    return best[1]


async def _reload(request: web.Request) -> list[dict[str, Any]]:
    """Load the folder again now (the other services' watchers see the file within a second)."""
    result = await asyncio.to_thread(request.app[MANAGER].reload)
    return [_folder_error(e) for e in result.errors]


@_guarded
async def save_persona(request: web.Request) -> web.Response:
    """Body `{"persona": {...}, "version": "<sha256 it was read at>"}`: only what changed is written."""
    _writer(request)
    persona_id = _id(request.match_info["persona_id"])
    body = await _object_body(request)
    draft = _draft(body)
    version = body.get("version")
    if not isinstance(version, str):
        raise StudioError(422, "'version' must be the version the persona was read at")
    files_ = _files(request)
    async with request.app[STUDIO].lock:
        current = await _read(request, persona_id)
        if current.version != version:
            raise StudioError(
                409, f"{current.path.name} changed on disk since it was opened; reload it first"
            )
        spec, _ = _parse(current.text, persona_id)
        # A file broken by hand is written fresh from the form (its comments cannot be kept).
        base, base_json = (current.text, spec_json(spec)) if spec else ("", _new_persona_json())
        result = apply_changes(base, changed_values(draft, base_json))
        _checked_text(result, persona_id, draft)
        if result.text == current.text:
            return web.json_response(
                {"ok": True, "id": persona_id, "version": current.version, "changed": False}
            )
        try:
            saved = await asyncio.to_thread(files_.replace, persona_id, result.text, version)
        except PersonaFileError as err:
            raise StudioError(409, err.message) from None
        folder_errors = await _reload(request)
    _LOGGER.info("Studio saved %s%s", saved.path.name, "" if result.comments_kept else " (written fresh)")
    return web.json_response(
        {
            "ok": True,
            "id": persona_id,
            "version": saved.version,
            "changed": True,
            "comments_kept": result.comments_kept,
            "folder_errors": folder_errors,
        }
    )


@_guarded
async def create_persona(request: web.Request) -> web.Response:
    """Body `{"id", "persona"?: {...}}` (new), `{"id", "yaml"}` (import) or `{"id", "copy_of", "persona"?}`
    (duplicate, with changes such as a new name). An id that is taken is refused (409)."""
    _writer(request)
    body = await _object_body(request)
    persona_id = _id(body.get("id"))
    draft = _draft(body, required=False)
    text, copy_of = body.get("yaml"), body.get("copy_of")
    if text is not None and not isinstance(text, str):
        raise StudioError(422, "'yaml' must be text", [field_error("(yaml)", "expected the YAML as text")])
    files_ = _files(request)
    if await asyncio.to_thread(files_.exists, persona_id):
        raise StudioError(
            409,
            f"a persona with id {persona_id!r} already exists",
            [field_error("id", f"{persona_id!r} is taken")],
        )
    if text is not None:
        base = text
        spec, errors = _parse(text, persona_id)
        if not draft and errors:
            raise StudioError(
                422,
                f"the file has {len(errors)} error(s); nothing was imported",
                [persona_error(e) for e in errors],
            )
        base_json = spec_json(spec) if spec else _new_persona_json()
    elif copy_of is not None:
        source_id = _id(copy_of, "copy_of")
        source = await _read(request, source_id)
        spec, _ = _parse(source.text, source_id)
        if spec is None:
            raise StudioError(422, f"{source.path.name} has errors: fix it before copying it")
        base, base_json = source.text, spec_json(spec)
    else:
        if not draft:
            raise StudioError(422, "a new persona needs 'persona', 'yaml' or 'copy_of'")
        base, base_json = "", _new_persona_json()
    result = apply_changes(base, changed_values(draft, base_json)) if draft else EditResult(base)
    _checked_text(result, persona_id, draft)
    async with request.app[STUDIO].lock:
        try:
            saved = await asyncio.to_thread(files_.create, persona_id, result.text)
        except PersonaFileError as err:
            raise StudioError(409, err.message, [field_error("id", err.message)]) from None
        folder_errors = await _reload(request)
    _LOGGER.info("Studio created %s", saved.path.name)
    return web.json_response(
        {"ok": True, "id": persona_id, "version": saved.version, "folder_errors": folder_errors}, status=201
    )


@_guarded
async def delete_persona(request: web.Request) -> web.Response:
    """Never the active persona (switch first), the last one, or one a pinned agent answers as."""
    _writer(request)
    persona_id = _id(request.match_info["persona_id"])
    manager = request.app[MANAGER]
    async with request.app[STUDIO].lock:
        active = await manager.current()
        personas = manager.personas
        if persona_id not in personas:
            raise StudioError(404, f"unknown persona {persona_id!r}")
        if persona_id == active.id:
            raise StudioError(409, f"{active.name} is the active persona: switch to another persona first")
        if len(personas) <= 1:
            raise StudioError(409, "the last persona cannot be deleted")
        for pin in request.app[SETTINGS].pinned:
            if pin.persona_id == persona_id:
                raise StudioError(
                    409,
                    f"the agent at {pin.uri} always answers as {persona_id}: remove that pinned agent first",
                )
        try:
            path = await asyncio.to_thread(_files(request).delete, persona_id)
        except PersonaFileError as err:
            raise StudioError(404, err.message) from None
        folder_errors = await _reload(request)
    _LOGGER.info("Studio deleted %s", path.name)
    return web.json_response(
        {"ok": True, "deleted": persona_id, "file": path.name, "folder_errors": folder_errors}
    )


@_guarded
async def validate_draft(request: web.Request) -> web.Response:
    """Body `{"id", "persona"}`: the loader's errors for the persona as it would be saved; writes nothing."""
    _reader(request)
    body = await _object_body(request)
    persona_id = _id(body.get("id"))
    draft = _draft(body)
    base, base_json = "", _new_persona_json()
    if persona_id in request.app[MANAGER].personas:
        try:
            current = await asyncio.to_thread(_files(request).read, persona_id)
        except PersonaFileError:
            current = None
        spec, _ = _parse(current.text, persona_id) if current else (None, [])
        if current is not None and spec is not None:
            base, base_json = current.text, spec_json(spec)
    result = apply_changes(base, changed_values(draft, base_json))
    _checked_text(result, persona_id, draft)
    return web.json_response({"ok": True, "id": persona_id, "yaml": result.text})


# -- hearing and trying -----------------------------------------------------------------------------
@_guarded
async def preview_voice(request: web.Request) -> web.Response:
    """Body `{"voice": {model, speaker, speed, pitch, volume}, "text"}`: the TTS speaks the text in
    those settings, saved or not, and the WAV comes back."""
    _writer(request)
    body = await _object_body(request)
    _, errors = check_json(body.get("voice"), VoiceSpec, "voice", Path("(preview)"))
    if errors:
        raise StudioError(422, "the voice settings have errors", [persona_error(e) for e in errors])
    text = body.get("text") or PREVIEW_TEXT
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_PREVIEW_CHARS:
        message = f"the sample must be text of 1 to {MAX_PREVIEW_CHARS} characters"
        raise StudioError(422, message, [field_error("preview", message)])
    settings = request.app[SETTINGS]
    uri = settings.service_uri("tts")
    if uri is None:
        raise StudioError(503, "no TTS service is configured (--studio-tts)")
    try:
        wav = await preview(uri, text, body["voice"], settings.studio_timeout)
    except SpeechError as err:
        raise StudioError(502, str(err)) from None
    return web.Response(body=wav, content_type="audio/wav", headers={"Cache-Control": "no-store"})


@_guarded
async def chat(request: web.Request) -> web.StreamResponse:
    """Body `{"persona_id", "text", "conversation_id"?}`: the persona service answers as that persona
    (never switching the active one), the TTS speaks it in its voice. NDJSON lines: `text` per chunk as
    it streams, `audio` at the first audio, then `done` (the WAV as a data URL, the times) or `error`."""
    _writer(request)
    body = await _object_body(request)
    settings = request.app[SETTINGS]
    persona_id = _id(body.get("persona_id"), "persona_id")
    if persona_id not in request.app[MANAGER].personas:
        raise StudioError(404, f"unknown persona {persona_id!r}: save it first")
    text = body.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_MESSAGE_CHARS:
        message = f"a message is text of 1 to {MAX_MESSAGE_CHARS} characters"
        raise StudioError(422, message, [field_error("message", message)])
    conversation_id = body.get("conversation_id") or f"studio-{uuid.uuid4().hex}"
    if not isinstance(conversation_id, str) or len(conversation_id) > MAX_CONVERSATION_ID_CHARS:
        raise StudioError(
            422, f"conversation_id must be text of at most {MAX_CONVERSATION_ID_CHARS} characters"
        )
    persona_uri = settings.service_uri("persona")
    if persona_uri is None:
        raise StudioError(503, "no persona service is configured (--studio-persona)")
    response = web.StreamResponse(
        headers={"Content-Type": NDJSON, "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)

    async def line(data: dict[str, Any]) -> None:
        await response.write(json.dumps(data).encode() + b"\n")

    async def on_text(piece: str, ms: float) -> None:
        await line({"type": "text", "text": piece, "ms": ms})

    async def on_audio(ms: float) -> None:
        await line({"type": "audio", "ms": ms})

    try:
        result = await trial_turn(
            persona_uri,
            settings.service_uri("tts"),
            persona_id,
            text.strip(),
            conversation_id,
            on_text,
            on_audio,
            settings.studio_timeout,
        )
        await line(_done(result))
    except SpeechError as err:
        await line({"type": "error", "message": str(err)})
    except ConnectionError:
        _LOGGER.debug("Studio chat: the page went away during the reply")
        return response
    await response.write_eof()
    return response


def _done(result: TrialResult) -> dict[str, Any]:
    audio = None
    if result.wav is not None:
        audio = "data:audio/wav;base64," + base64.b64encode(result.wav).decode("ascii")
    return {
        "type": "done",
        "text": result.text,
        "persona_id": result.persona_id,
        "conversation_id": result.conversation_id,
        "first_text_ms": result.first_text_ms,
        "first_audio_ms": result.first_audio_ms,
        "total_ms": result.total_ms,
        "intent": result.intent,
        "audio": audio,
        "tts_error": result.tts_error,
    }
