"""Fixtures shared by every test area."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from vad.helpers import Speech

from wyoming_persona.vad.silero import SileroModel

REPO = Path(__file__).resolve().parent.parent
SHIPPED_PERSONAS = REPO / "config" / "personas"


@pytest.fixture
def personas_dir(tmp_path: Path) -> Path:
    """A private copy of the shipped personas, safe to edit."""
    folder = tmp_path / "personas"
    shutil.copytree(SHIPPED_PERSONAS, folder)
    return folder


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "state"
    folder.mkdir()
    return folder


@pytest.fixture(scope="session")
def silero() -> SileroModel:
    """The Silero VAD model, loaded once for the VAD and ASR tests."""
    return SileroModel()


@pytest.fixture(scope="session")
def speech() -> Speech:
    """Piper speech clips (noise scales 0), made once per session."""
    return Speech()


@pytest.fixture
def persona_file_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread of every persona-folder parse and state-file read, in order (patched in)."""
    import threading

    from wyoming_persona.personas import manager as manager_module
    from wyoming_persona.personas.state import ActivePersonaStore

    threads: list[int] = []

    def counted(func):
        def wrapper(*args, **kwargs):
            threads.append(threading.get_ident())
            return func(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(manager_module, "load_folder", counted(manager_module.load_folder))
    monkeypatch.setattr(ActivePersonaStore, "read", counted(ActivePersonaStore.read))
    return threads


@pytest.fixture
async def ha_websocket(aiohttp_server):
    """A server speaking Home Assistant's websocket API with the HA harness's home (tests/home)."""
    from home.ha_websocket import HaWebsocket

    fake = HaWebsocket.with_harness_home()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
