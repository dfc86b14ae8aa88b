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
