"""VAD fixtures: the shared Silero model, Piper speech, a loopback server factory."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from functools import partial

import pytest

from wyoming_persona.vad.handler import VadEventHandler, vad_info
from wyoming_persona.vad.segmenter import VadSettings
from wyoming_persona.vad.silero import SileroModel
from wyoming_persona.wyoming_server import FrameLimits, ServiceServer

from .helpers import running

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture
def vad_server(silero: SileroModel) -> Callable[..., AbstractAsyncContextManager[ServiceServer]]:
    """`async with vad_server(settings, limits) as server:` a VAD server on a free loopback port."""

    def make(
        settings: VadSettings | None = None, limits: FrameLimits | None = None
    ) -> AbstractAsyncContextManager[ServiceServer]:
        settings = settings or VadSettings()
        limits = limits or FrameLimits()
        factory = partial(VadEventHandler, info=vad_info, limits=limits, model=silero, settings=settings)
        return running(ServiceServer("tcp://127.0.0.1:0", factory))

    return make


@pytest.fixture
async def server(vad_server) -> AsyncIterator[ServiceServer]:
    async with vad_server() as server:
        yield server
