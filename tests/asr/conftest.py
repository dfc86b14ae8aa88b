"""ASR fixtures: Whisper tiny.en and Silero loaded once, Piper speech, a loopback server factory."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from functools import partial

import pytest
from vad.helpers import running

from wyoming_persona.asr.handler import AsrEventHandler, AsrSettings
from wyoming_persona.asr.info import asr_info
from wyoming_persona.asr.models import resolve_model
from wyoming_persona.asr.smart_turn import SmartTurnModel
from wyoming_persona.asr.transcriber import WhisperSettings, WhisperTranscriber
from wyoming_persona.wyoming_server import FrameLimits, ServiceServer

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def transcriber() -> Iterator[WhisperTranscriber]:
    transcriber = WhisperTranscriber(WhisperSettings(resolve_model("tiny.en"), "tiny.en", cpu_threads=2))
    yield transcriber
    transcriber.close()


@pytest.fixture(scope="session")
def turn_model() -> SmartTurnModel:
    """Smart Turn v3 from the installed pipecat-ai wheel, loaded once."""
    return SmartTurnModel()


@pytest.fixture
def asr_server(transcriber, silero) -> Callable[..., AbstractAsyncContextManager[ServiceServer]]:
    """`async with asr_server(settings, limits, turn_model) as server:` an ASR server on a free port."""

    def make(
        settings: AsrSettings | None = None,
        limits: FrameLimits | None = None,
        turn_model: SmartTurnModel | None = None,
    ) -> AbstractAsyncContextManager[ServiceServer]:
        settings = settings or AsrSettings()
        info = asr_info(transcriber, endpointing=settings.endpoint_ms is not None)
        factory = partial(
            AsrEventHandler,
            info=lambda: info,
            limits=limits or FrameLimits(),
            transcriber=transcriber,
            vad_model=silero,
            settings=settings,
            turn_model=turn_model,
        )
        return running(ServiceServer("tcp://127.0.0.1:0", factory))

    return make


@pytest.fixture
async def server(asr_server) -> AsyncIterator[ServiceServer]:
    async with asr_server() as server:
        yield server


@pytest.fixture
def worker_gate(transcriber: WhisperTranscriber) -> Iterator[threading.Event]:
    """Holds the Whisper worker thread busy until the event is set (so ordering is deterministic)."""
    gate = threading.Event()
    transcriber._executor.submit(gate.wait, 60)
    yield gate
    gate.set()


@pytest.fixture
def model_runs(transcriber: WhisperTranscriber, monkeypatch) -> list[str]:
    """Texts of every transcription the worker actually ran during the test."""
    runs: list[str] = []
    original = transcriber.transcribe_blocking

    def counting(audio, language, cancel=None):
        result = original(audio, language, cancel)
        runs.append(result.text)
        return result

    monkeypatch.setattr(transcriber, "transcribe_blocking", counting)
    return runs
