"""The per-connection boundary counts and times every event into the server's own registry."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from functools import partial

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from wyoming.event import Event, async_read_event, async_write_event
from wyoming.info import Info

from wyoming_persona.service_metrics import CONTENT_TYPE, RequestTiming, ServiceMetrics, start_exporter
from wyoming_persona.wyoming_server import ClientError, ServiceServer, WyomingService

TIMEOUT = 30


class ToyAgent(WyomingService):
    """`transcript` -> handled-start, handled-chunk, handled; `bad` -> ClientError; `boom` -> crash."""

    async def handle_event(self, event: Event) -> bool:
        if event.type == "transcript":
            await self.write_event(Event("handled-start"))
            await self.write_event(Event("handled-chunk", {"text": "hi"}))
            await self.write_event(Event("handled", {"text": "hi"}))
            await self.write_event(Event("handled-stop"))
            return True
        if event.type == "boom":
            raise RuntimeError("kaboom")
        if event.type == "bad":
            raise ClientError("that request is bad", "bad-request")
        raise self.unexpected(event)


@contextlib.asynccontextmanager
async def running(service: str, metrics: ServiceMetrics | None = None) -> AsyncIterator[ServiceServer]:
    metrics = metrics or ServiceMetrics(service)
    server = ServiceServer("tcp://127.0.0.1:0", partial(ToyAgent, info=Info), metrics)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def ask(self, event_type: str, until: str, **data) -> list[Event]:
        await async_write_event(Event(event_type, data), self.writer)
        events = []
        async with asyncio.timeout(TIMEOUT):
            while (event := await async_read_event(self.reader)) is not None:
                events.append(event)
                if event.type in (until, "error"):
                    return events
        return events


@contextlib.asynccontextmanager
async def connect(server: ServiceServer) -> AsyncIterator[Connection]:
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        yield Connection(reader, writer)
    finally:
        writer.close()


def value(server: ServiceServer, name: str, **labels: str) -> float:
    return server.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_events_are_counted_by_type_and_outcome() -> None:
    async with running("persona") as server, connect(server) as conn:
        assert (await conn.ask("describe", "info"))[-1].type == "info"
        assert (await conn.ask("ping", "pong"))[-1].type == "pong"
        assert (await conn.ask("bad", "error"))[-1].data["code"] == "bad-request"
        assert (await conn.ask("no-such-type", "error"))[-1].data["code"] == "unexpected"
        assert (await conn.ask("boom", "error"))[-1].data["code"] == "internal"

    events = "wyoming_persona_events_total"
    assert value(server, events, service="persona", event="describe", outcome="ok") == 1
    assert value(server, events, service="persona", event="ping", outcome="ok") == 1
    # An unknown type counts as "other": a client cannot grow the label set.
    assert value(server, events, service="persona", event="other", outcome="client_error") == 2
    assert value(server, events, service="persona", event="other", outcome="internal_error") == 1
    errors = "wyoming_persona_errors_sent_total"
    assert value(server, errors, service="persona", code="bad-request") == 1
    assert value(server, errors, service="persona", code="unexpected") == 1
    assert value(server, errors, service="persona", code="internal") == 1
    seconds = "wyoming_persona_event_handling_seconds_count"
    assert value(server, seconds, service="persona", event="describe") == 1
    assert value(server, "wyoming_persona_connections_total", service="persona") == 1


async def test_a_bad_frame_is_counted_as_an_error_sent() -> None:
    async with running("persona") as server, connect(server) as conn:
        conn.writer.write(b"this is not json\n")
        async with asyncio.timeout(TIMEOUT):
            event = await async_read_event(conn.reader)
    assert event is not None and event.type == "error"
    assert value(server, "wyoming_persona_errors_sent_total", service="persona", code="bad-frame") == 1


async def test_request_latency_and_time_to_first_chunk() -> None:
    async with running("persona") as server, connect(server) as conn:
        for _ in range(2):
            events = await conn.ask("transcript", "handled-stop", text="hello")
            assert [e.type for e in events][-2:] == ["handled", "handled-stop"]
    labels = {"service": "persona", "event": "transcript"}
    assert value(server, "wyoming_persona_request_seconds_count", **labels) == 2
    assert value(server, "wyoming_persona_first_response_seconds_count", **labels) == 2
    assert value(server, "wyoming_persona_request_seconds_sum", **labels) > 0


async def test_a_request_answered_by_an_error_counts_as_failed() -> None:
    """A service whose timings make `bad` a request: its error ends it without a latency sample."""
    metrics = ServiceMetrics("tts", timings=(RequestTiming("bad", last=frozenset({"audio-stop"})),))
    async with running("tts", metrics) as server, connect(server) as conn:
        await conn.ask("bad", "error")
    assert value(server, "wyoming_persona_requests_failed_total", service="tts", event="bad") == 1
    assert value(server, "wyoming_persona_request_seconds_count", service="tts", event="bad") == 0


async def test_exporter_serves_the_registry_over_http() -> None:
    async with running("persona") as server:
        async with connect(server) as conn:
            await conn.ask("describe", "info")
        runner = await start_exporter(server.metrics, "127.0.0.1", 0)
        try:
            port = runner.addresses[0][1]
            timeout = aiohttp.ClientTimeout(total=TIMEOUT)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(f"http://127.0.0.1:{port}/metrics") as response,
            ):
                assert response.status == 200
                assert response.headers["Content-Type"] == CONTENT_TYPE
                text = await response.text()
        finally:
            await runner.cleanup()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for s in families["wyoming_persona_events"].samples
    }
    key = (("event", "describe"), ("outcome", "ok"), ("service", "persona"))
    assert samples[("wyoming_persona_events_total", key)] == 1


async def test_exporter_on_a_taken_port_fails_loudly() -> None:
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    try:
        with pytest.raises(OSError):
            await start_exporter(ServiceMetrics("vad"), "127.0.0.1", port)
    finally:
        blocker.close()
        await blocker.wait_closed()
