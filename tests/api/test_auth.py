"""Requests from off the machine (simulated; all traffic stays on loopback): without a token refused
(403); with one, unauthenticated or wrong (401) and oversized (413) requests are refused before any work
is done."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from wyoming_persona.api import ApiSettings, make_app
from wyoming_persona.api.app import MAX_BODY_BYTES, token_matches
from wyoming_persona.personas import PersonaManager

TOKEN = "s3cret-token"
TIMEOUT = aiohttp.ClientTimeout(total=30)


REMOTE_PEER = "203.0.113.7"
"""A documentation address (TEST-NET-3) that requests are made to appear to come from; no traffic goes
there: the tests talk to 127.0.0.1 only and a middleware put in front of the app's own rewrites the peer."""


@web.middleware
async def _from_remote_peer(request: web.Request, handler):
    """Present the request as coming from REMOTE_PEER unless it says it is local (X-Test-Local)."""
    if "X-Test-Local" not in request.headers:
        request = request.clone(remote=REMOTE_PEER)
    return await handler(request)


@pytest.fixture
async def served(manager: PersonaManager, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The app on a free loopback port, with every request seen as from a non-loopback peer."""
    app = make_app(manager, ApiSettings(token=request.param, services=()))
    app.middlewares.insert(0, _from_remote_peer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def _request(method: str, url: str, **kwargs) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.request(method, url, **kwargs) as response,
    ):
        return response.status, await response.json()


@pytest.mark.parametrize("served", [TOKEN], indirect=True)
async def test_remote_requests_need_the_right_token(served: str) -> None:
    status, body = await _request("GET", f"{served}/api/personas")
    assert status == 401 and "bearer token" in body["error"]
    for header in (f"Bearer {TOKEN}x", "Bearer ", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN[:-1]}"):
        status, _ = await _request("GET", f"{served}/api/personas", headers={"Authorization": header})
        assert status == 401, header
    good = {"Authorization": f"Bearer {TOKEN}"}
    status, body = await _request("GET", f"{served}/api/active", headers=good)
    assert status == 200 and body["id"] == "assistant"


@pytest.mark.parametrize("served", [TOKEN], indirect=True)
async def test_oversized_bodies_are_refused(served: str) -> None:
    big = b"x" * (MAX_BODY_BYTES + 1)
    good = {"Authorization": f"Bearer {TOKEN}"}
    # Unauthenticated: 401 before the size matters.
    status, _ = await _request("PUT", f"{served}/api/active", data=big)
    assert status == 401
    # With a length header: refused up front, on any route (even one that reads no body).
    for method, path in (("PUT", "/api/active"), ("POST", "/api/validate"), ("GET", "/api/personas")):
        status, body = await _request(method, f"{served}{path}", data=big, headers=good)
        assert status == 413 and "larger than" in body["error"], path

    # Without a length header (chunked): cut off when the body is read.
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b"x" * (MAX_BODY_BYTES // 4)

    status, body = await _request("PUT", f"{served}/api/active", data=chunks(), headers=good)
    assert status == 413


@pytest.mark.parametrize("served", [None], indirect=True)
async def test_without_a_token_remote_peers_are_refused(served: str, manager: PersonaManager) -> None:
    """Defence in depth: the CLI refuses a non-loopback bind without a token; the app refuses such peers."""
    status, body = await _request("PUT", f"{served}/api/active", json={"id": "robot"})
    assert status == 403 and "--token" in body["error"]
    assert manager.active().id == "assistant"
    status, body = await _request("GET", f"{served}/api/active", headers={"X-Test-Local": "1"})
    assert status == 200 and body["id"] == "assistant"


def test_token_matches() -> None:
    assert token_matches(f"Bearer {TOKEN}", TOKEN)
    assert token_matches(f"bearer  {TOKEN} ", TOKEN)
    for header in (
        "",
        "Bearer",
        f"Bearer {TOKEN}!",
        f"Token {TOKEN}",
        f"Bearer {TOKEN.upper()}",
        "Bearer \udcff",
    ):
        assert not token_matches(header, TOKEN), header
