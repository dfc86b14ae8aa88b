"""The control API: `make_app(manager, settings)` builds the aiohttp application.

Only two endpoints write: PUT /api/active writes the state file and POST /api/reload re-reads the
personas folder. POST /api/validate parses a body in memory and never touches the disk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from .. import __version__
from ..access import token_matches
from ..personas import Persona, PersonaError, PersonaManager, build_system_prompt
from ..personas.loader import MAX_FILE_BYTES, PERSONA_ID, parse_persona
from . import studio as studio_views
from .health import probe_all
from .keys import HTTP, INGRESS, MANAGER, METRICS, OPENAPI, SETTINGS, STUDIO
from .lookup import find_persona, option_labels
from .metrics import ApiMetrics, render_merged
from .openapi import load_openapi
from .scrape import scrape_all
from .session import ACCESS, Access, same_peer
from .settings import ApiSettings
from .studio import Studio

_LOGGER = logging.getLogger(__name__)

__all__ = ["HTTP", "INGRESS", "MANAGER", "METRICS", "OPENAPI", "SETTINGS", "STUDIO", "make_app"]

MAX_BODY_BYTES = MAX_FILE_BYTES + 1024
"""Largest request body: a persona file plus room for the rest of a request."""

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(
    manager: PersonaManager,
    settings: ApiSettings,
    metrics: ApiMetrics | None = None,
    ingress: bool = False,
    studio: Studio | None = None,
) -> web.Application:
    """The API with the persona studio. `ingress`: the application behind Home Assistant's ingress
    port, which answers only the Supervisor (`settings.ingress_peer`); it shares `metrics` and
    `studio` (sessions, the write lock) with the API port's application."""
    app = web.Application(
        middlewares=[_metrics_middleware, _error_middleware, _auth_middleware],
        client_max_size=MAX_BODY_BYTES,
    )
    app[MANAGER] = manager
    app[SETTINGS] = settings
    app[METRICS] = metrics or ApiMetrics()
    app[OPENAPI] = load_openapi()
    app[INGRESS] = ingress
    app[STUDIO] = studio or Studio()
    app.cleanup_ctx.append(_watch_personas)
    app.cleanup_ctx.append(_http_session)
    app.router.add_get("/api/personas", list_personas)
    app.router.add_get("/api/personas/{persona_id}", show_persona)
    app.router.add_get("/api/active", get_active)
    app.router.add_put("/api/active", put_active)
    app.router.add_post("/api/reload", reload_personas)
    app.router.add_post("/api/validate", validate_persona)
    app.router.add_get("/api/health", health)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/api/openapi.json", openapi_view)
    studio_views.install(app)
    return app


async def _watch_personas(app: web.Application) -> AsyncIterator[None]:
    """Views read the manager's memory; its watcher keeps that current while the app runs."""
    async with app[MANAGER].watching():
        yield


async def _http_session(app: web.Application) -> AsyncIterator[None]:
    """The client session that scrapes the services' metrics (each scrape has its own timeout)."""
    async with aiohttp.ClientSession() as session:
        app[HTTP] = session
        yield


# -- middleware ---------------------------------------------------------------------------------
def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, "status": status, **extra}, status=status)


@web.middleware
async def _metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "(unmatched)"
        request.app[METRICS].observe_request(request.method, name, status, time.perf_counter() - start)


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as JSON: aiohttp's own 404/405/413 included."""
    try:
        return await handler(request)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        message = err.reason
        if err.status == 404 and request.match_info.route.resource is None:
            message = f"no endpoint {request.path}"
        elif err.status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        elif err.status == 413:
            message = f"request body larger than {MAX_FILE_BYTES} bytes"
        if err.content_type == "application/json" and err.text:
            response = web.json_response(json.loads(err.text), status=err.status)
        else:
            response = json_error(err.status, message)
        if "Allow" in err.headers:  # a 405 says which methods the endpoint has
            response.headers["Allow"] = err.headers["Allow"]
        return response
    except Exception:  # the one boundary: log it, answer JSON, keep serving
        _LOGGER.exception("Unexpected error in %s %s", request.method, request.path)
        return json_error(500, "internal error; see the API log")


@web.middleware
async def _auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Without a token only loopback peers are served (403 otherwise); with one, every request needs it
    (but the studio's page and files, which hold no data). The ingress port answers only the
    Supervisor's proxy. See session.py for the studio's sessions on top.

    An authorised request whose declared body is over the limit is refused (413) before it is read;
    a body without a length is cut at the same limit when read.
    """
    settings = request.app[SETTINGS]
    token = settings.token
    if request.app[INGRESS]:
        if not same_peer(request.remote, settings.ingress_peer):
            return json_error(
                403, f"this port only answers Home Assistant's ingress proxy at {settings.ingress_peer}"
            )
        request[ACCESS] = Access.INGRESS
    elif token:
        if token_matches(request.headers.get("Authorization", ""), token):
            request[ACCESS] = Access.TOKEN
        elif _is_page(request):
            request[ACCESS] = Access.ANONYMOUS
        else:
            response = json_error(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
            response.headers["WWW-Authenticate"] = 'Bearer realm="wyoming-persona"'
            return response
    elif not _is_loopback_peer(request.remote):
        return json_error(403, "no --token is set: the API only answers requests from this machine")
    else:
        request[ACCESS] = Access.LOCAL
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return json_error(413, f"request body larger than {MAX_FILE_BYTES} bytes")
    return await handler(request)


def _is_page(request: web.Request) -> bool:
    """The studio's page and files: no data in them, so a browser can load them and ask for the token."""
    return request.method in ("GET", "HEAD") and (request.path == "/" or request.path.startswith("/studio/"))


def _is_loopback_peer(remote: str | None) -> bool:
    if remote is None:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False  # not an IP peer (a unix socket has no remote address in aiohttp)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _raise(status: int, message: str, **extra: Any) -> web.HTTPException:
    body = json.dumps({"error": message, "status": status, **extra})
    exc_class = {400: web.HTTPBadRequest, 404: web.HTTPNotFound, 422: web.HTTPUnprocessableEntity}[status]
    return exc_class(text=body, content_type="application/json")


# -- personas -----------------------------------------------------------------------------------
def persona_summary(persona: Persona, active_id: str, label: str) -> dict[str, Any]:
    return {
        "id": persona.id,
        "name": persona.name,
        "label": label,
        "description": persona.spec.description,
        "language": persona.language,
        "aliases": list(persona.spec.aliases),
        "voice": dataclasses.asdict(persona.voice),
        "active": persona.id == active_id,
    }


def persona_detail(persona: Persona, active_id: str, label: str) -> dict[str, Any]:
    return {
        **persona_summary(persona, active_id, label),
        "greeting": persona.greeting,
        "llm": dataclasses.asdict(persona.llm),
        "fallbacks": dataclasses.asdict(persona.spec.fallbacks),
        "file": persona.source.name,
        "system_prompt": build_system_prompt(persona),
    }


def error_json(error: PersonaError) -> dict[str, Any]:
    return {
        "file": Path(error.path).name,
        "line": error.line,
        "column": error.column,
        "field": error.field,
        "message": error.message,
        "text": f"{Path(error.path).name}:{error.line}:{error.column}: {error.field}: {error.message}",
    }


async def list_personas(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    personas = manager.personas
    active = manager.active()
    labels = option_labels(personas)
    return web.json_response(
        {
            "active": active.id,
            "personas": [persona_summary(p, active.id, labels[p.id]) for p in personas.values()],
        }
    )


async def show_persona(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    personas = manager.personas
    persona_id = request.match_info["persona_id"]
    persona = personas.get(persona_id)
    if persona is None:
        raise _raise(404, f"unknown persona {persona_id!r}", known=list(personas))
    labels = option_labels(personas)
    return web.json_response(persona_detail(persona, manager.active().id, labels[persona.id]))


async def get_active(request: web.Request) -> web.Response:
    persona = request.app[MANAGER].active()
    return web.json_response({"id": persona.id, "name": persona.name})


async def put_active(request: web.Request) -> web.Response:
    """Body `{"id": "pirate"}`; a persona name or alias is accepted too (handy in automations)."""
    manager = request.app[MANAGER]
    body = await _json_body(request)
    wanted = body.get("id")
    if not isinstance(wanted, str) or not wanted.strip():
        raise _raise(422, 'body must be {"id": "<persona id>"}')
    personas = manager.personas
    persona = find_persona(personas, wanted)
    if persona is None:
        raise _raise(404, f"unknown persona {wanted!r}", known=list(personas))
    previous = manager.active().id
    persona = await asyncio.to_thread(manager.set_active, persona.id)
    if persona.id != previous:
        request.app[METRICS].count_switch("api")
    return web.json_response({"id": persona.id, "name": persona.name, "previous": previous})


async def reload_personas(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    result = await asyncio.to_thread(manager.reload)
    personas = list(manager.personas)
    if not result.ok:
        raise _raise(
            422,
            f"personas folder has {len(result.errors)} error(s); the previous personas stay loaded",
            errors=[error_json(e) for e in result.errors],
            personas=personas,
        )
    return web.json_response({"ok": True, "changed": result.changed, "personas": personas})


async def validate_persona(request: web.Request) -> web.Response:
    """Validate a persona YAML body (`?id=` names the file it would be); nothing is written."""
    persona_id = request.query.get("id", "persona")
    if not PERSONA_ID.fullmatch(persona_id):  # match() would let a trailing newline through
        raise _raise(422, f"id {persona_id!r} must be lowercase letters, digits, _ or -")
    raw = await request.read()
    if not raw.strip():
        raise _raise(400, "empty body: send the persona YAML as the request body")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _raise(400, f"body is not UTF-8: {err}") from None
    path = Path(f"{persona_id}.yaml")
    errors: list[PersonaError] = []
    spec = parse_persona(text, path, errors)
    if errors or spec is None:
        raise _raise(
            422, f"persona has {len(errors)} error(s)", ok=False, errors=[error_json(e) for e in errors]
        )
    persona = Persona(id=persona_id, source=path, spec=spec)
    return web.json_response(
        {
            "ok": True,
            "id": persona_id,
            "name": persona.name,
            "voice": dataclasses.asdict(persona.voice),
            "system_prompt": build_system_prompt(persona),
        }
    )


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _raise(400, f"body is not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise _raise(400, "body must be a JSON object")
    return body


# -- health and metrics -------------------------------------------------------------------------
async def _probe(app: web.Application) -> list:
    settings = app[SETTINGS]
    results = await probe_all(settings.services, settings.health_timeout)
    for result in results:
        seconds = (result.latency_ms or 0.0) / 1000
        app[METRICS].observe_probe(result.name, result.ok, seconds)
    return results


async def health(request: web.Request) -> web.Response:
    results = await _probe(request.app)
    healthy = all(r.ok for r in results)
    body = {
        "ok": healthy,
        "version": __version__,
        "active_persona": request.app[MANAGER].active().id,
        "services": [r.as_json() for r in results],
    }
    return web.json_response(body, status=200 if healthy else 503)


async def metrics_view(request: web.Request) -> web.Response:
    """Probes the services (like a blackbox exporter) and scrapes their own metrics on each scrape.

    A service that does not answer shows as `wyoming_persona_scrape_up{service=...} 0`; this endpoint
    itself still answers 200 with everything it has.
    """
    app = request.app
    settings = app[SETTINGS]
    _, scraped = await asyncio.gather(
        _probe(app), scrape_all(app[HTTP], settings.scrape, settings.health_timeout)
    )
    metrics = app[METRICS]
    for result in scraped:
        metrics.observe_scrape(result.name, result.ok, result.seconds)
    manager = app[MANAGER]
    metrics.set_personas(list(manager.personas), manager.active().id)
    body = render_merged(metrics, [(r.name, r.families) for r in scraped if r.ok])
    return web.Response(body=body, headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})


async def openapi_view(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of this API (kept in openapi.json beside this module)."""
    return web.Response(body=request.app[OPENAPI], content_type="application/json")
