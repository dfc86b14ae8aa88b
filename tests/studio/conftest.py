"""Fixtures for the persona studio: the API app with a studio session, and the real services behind it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from agent.conftest import fake_ollama  # noqa: F401 - the in-test Ollama server, as a fixture here too
from aiohttp import web
from aiohttp.test_utils import TestClient

from wyoming_persona.api import ApiSettings, make_app
from wyoming_persona.api.session import HEADER
from wyoming_persona.personas import PersonaManager


@pytest.fixture
def manager(personas_dir: Path, state_dir: Path) -> PersonaManager:
    return PersonaManager(personas_dir, state_dir, refresh_interval=0.0)


@dataclass
class Studio:
    """A client of the studio that loaded its page: it holds the session cookie and token."""

    client: TestClient
    token: str

    @property
    def session(self) -> dict[str, str]:
        return {HEADER: self.token}

    async def call(self, method: str, path: str, **kwargs) -> aiohttp.ClientResponse:
        headers = {**self.session, **kwargs.pop("headers", {})}
        return await self.client.request(method, path, headers=headers, **kwargs)


def page_token(page: str) -> str:
    found = re.search(r'<meta name="studio-session" content="([^"]*)">', page)
    assert found, page[:500]
    return found.group(1)


StudioFactory = Callable[..., "AsyncIterator[Studio]"]


@pytest.fixture
async def studio(aiohttp_client, manager: PersonaManager) -> AsyncIterator[Callable]:
    """`await studio(**settings)`: the API (loopback, no token) with the page loaded."""

    async def make(app: web.Application | None = None, **settings) -> Studio:
        app = app or make_app(manager, ApiSettings(**{"services": (), **settings}))
        client = await aiohttp_client(app, cookie_jar=aiohttp.CookieJar(unsafe=True))
        response = await client.get("/")
        assert response.status == 200
        return Studio(client, page_token(await response.text()))

    yield make
