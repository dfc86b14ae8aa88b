"""TTS latency metrics on the real joe voice: time to first audio and whole-request time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wyoming_persona.service_metrics import ServiceMetrics
from wyoming_persona.wyoming_server import ServiceServer

from .conftest import Client, start_service


@pytest.fixture
async def metered(tts_personas: Path, state_dir: Path, voices_dir: Path) -> AsyncIterator[ServiceServer]:
    """The TTS handler behind a server that reports as service "tts"."""
    svc = await start_service(tts_personas, state_dir, voices_dir)
    await svc.server.close()
    server = ServiceServer("tcp://127.0.0.1:0", svc.server.handler_factory, ServiceMetrics("tts"))
    await server.start()
    yield server
    await server.close()


def value(server: ServiceServer, name: str, **labels: str) -> float:
    return server.metrics.registry.get_sample_value(name, {"service": "tts", **labels}) or 0.0


async def test_synthesize_is_timed_to_first_audio_and_to_audio_stop(metered: ServiceServer) -> None:
    client = await Client.connect(metered.port)
    try:
        await client.send("synthesize", text="Hello there. This is a test.", voice={"name": "plain"})
        events = await client.read_until("audio-stop")
        assert events[-1].type == "audio-stop"
    finally:
        await client.close()
    first = value(metered, "wyoming_persona_first_response_seconds_sum", event="synthesize")
    total = value(metered, "wyoming_persona_request_seconds_sum", event="synthesize")
    assert value(metered, "wyoming_persona_first_response_seconds_count", event="synthesize") == 1
    assert value(metered, "wyoming_persona_request_seconds_count", event="synthesize") == 1
    assert 0 < first <= total


async def test_a_stream_is_one_request_and_its_compat_synthesize_is_not_timed(metered: ServiceServer) -> None:
    client = await Client.connect(metered.port)
    try:
        await client.send("synthesize-start", voice={"name": "plain"})
        await client.send("synthesize-chunk", text="First sentence here. Second one")
        await client.send("synthesize-chunk", text=" follows.")
        await client.send("synthesize", text="First sentence here. Second one follows.")
        await client.send("synthesize-stop")
        events = await client.read_until("synthesize-stopped")
        assert events[-1].type == "synthesize-stopped"
    finally:
        await client.close()
    assert value(metered, "wyoming_persona_request_seconds_count", event="synthesize-start") == 1
    assert value(metered, "wyoming_persona_first_response_seconds_count", event="synthesize-start") == 1
    assert value(metered, "wyoming_persona_request_seconds_count", event="synthesize") == 0
    ok = "wyoming_persona_events_total"
    assert value(metered, ok, event="synthesize-chunk", outcome="ok") == 2
    assert value(metered, ok, event="synthesize", outcome="ok") == 1
