"""Fixtures for home control: the HA harness's home as a snapshot (its server: tests/conftest.py)."""

from __future__ import annotations

import pytest

from wyoming_persona.home.link import build_snapshot
from wyoming_persona.home.model import HomeSnapshot

from .ha_websocket import AREAS, harness_home


@pytest.fixture
def home() -> HomeSnapshot:
    states, entries, exposed = harness_home()
    return build_snapshot(states, exposed, entries, [], AREAS, version=1)
