"""Fixtures for home control: the HA harness's home as HA's websocket API serves it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from wyoming_persona.home.link import build_snapshot
from wyoming_persona.home.model import HomeSnapshot

from .ha_websocket import AREAS, HaWebsocket, harness_home


@pytest.fixture
def home() -> HomeSnapshot:
    states, entries, exposed = harness_home()
    return build_snapshot(states, exposed, entries, [], AREAS, version=1)


@pytest.fixture
async def ha_websocket(aiohttp_server) -> AsyncIterator[HaWebsocket]:
    fake = HaWebsocket.with_harness_home()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
