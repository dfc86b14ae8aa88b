"""`wyoming-persona vad --metrics-port`: the real server, run as its CLI, counts and times its audio."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from wyoming.event import Event
from wyoming.ping import Ping

from wyoming_persona.audio import pcm_chunks
from wyoming_persona.suite import free_ports

from .helpers import PCM16K, Client, Speech

TIMEOUT = 60


async def _wait_ready(port: int, process: asyncio.subprocess.Process, log: Path) -> Client:
    async with asyncio.timeout(TIMEOUT):
        while True:
            if process.returncode is not None:
                pytest.fail(await asyncio.to_thread(log.read_text))
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            return Client(reader, writer)


async def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_port_serves_counts_and_latency_of_real_requests(
    tmp_path: Path, speech: Speech
) -> None:
    ports = free_ports(("vad", "metrics"))
    log = tmp_path / "vad.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wyoming_persona", "vad",
            "--uri", f"tcp://127.0.0.1:{ports['vad']}", "--metrics-port", str(ports["metrics"]),
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        client = await _wait_ready(ports["vad"], process, log)
        pcm = speech.say("Turn on the kitchen light.")
        chunks = len(list(pcm_chunks(pcm, PCM16K, 64)))
        await client.send_audio(pcm, stop=True)
        await client.send(Ping(text="done").event(), Event("no-such-event"))
        events = await client.receive_until("error")
        assert "voice-started" in [e.type for e in events] and "pong" in [e.type for e in events]
        client.close()

        samples = await _scrape(ports["metrics"])
        vad = (("service", "vad"),)
        chunk_ok = ("wyoming_persona_events_total", (("event", "audio-chunk"), ("outcome", "ok"), *vad))
        assert samples[chunk_ok] == chunks
        handled = ("wyoming_persona_event_handling_seconds_count", (("event", "audio-chunk"), *vad))
        assert samples[handled] == chunks
        assert samples[("wyoming_persona_event_handling_seconds_sum", (("event", "audio-chunk"), *vad))] > 0
        other = ("wyoming_persona_events_total", (("event", "other"), ("outcome", "client_error"), *vad))
        assert samples[other] == 1
        assert samples[("wyoming_persona_errors_sent_total", (("code", "unexpected"), *vad))] == 1
        assert samples[("wyoming_persona_connections_total", vad)] == 1
    finally:
        if process.returncode is None:
            process.terminate()
        async with asyncio.timeout(TIMEOUT):
            await process.wait()
    if process.returncode != 0:
        pytest.fail(await asyncio.to_thread(log.read_text))
