"""The shared Wyoming server base: strict framing, describe/ping, and an error boundary that keeps serving."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from functools import partial

import pytest
from wyoming.error import Error
from wyoming.event import Event, async_read_event, async_write_event
from wyoming.info import Attribution, Info, TtsProgram

from wyoming_persona.wyoming_server import ClientError, FrameLimits, ServiceServer, WyomingService

LIMITS = FrameLimits(max_header_bytes=4096, max_data_bytes=1024, max_payload_bytes=2048)


def info() -> Info:
    attribution = Attribution(name="test", url="https://example.invalid")
    program = TtsProgram(
        name="echo", attribution=attribution, installed=True, description="", version="1", voices=[]
    )
    return Info(tts=[program])


class EchoService(WyomingService):
    """Echoes `echo` events, rejects `bad` with a ClientError, crashes on `boom`."""

    async def handle_event(self, event: Event) -> bool:
        if event.type == "echo":
            await self.write_event(Event("echoed", event.data, event.payload))
            return True
        if event.type == "boom":
            raise RuntimeError("kaboom")
        if event.type == "bad":
            raise ClientError("that request is bad", "bad-request")
        raise self.unexpected(event)


@pytest.fixture
async def server() -> AsyncIterator[ServiceServer]:
    server = ServiceServer("tcp://127.0.0.1:0", partial(EchoService, info=info, limits=LIMITS))
    await server.start()
    yield server
    await server.close()


async def connect(server: ServiceServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with asyncio.timeout(5):
        return await asyncio.open_connection("127.0.0.1", server.port)


async def roundtrip(server: ServiceServer, *raw: bytes, count: int, closes: bool = False) -> list[Event]:
    """Send raw bytes, read `count` events; with `closes`, also expect the server to hang up."""
    reader, writer = await connect(server)
    for chunk in raw:
        writer.write(chunk)
    await writer.drain()
    events = []
    async with asyncio.timeout(10):
        while len(events) < count and (event := await async_read_event(reader)) is not None:
            events.append(event)
        if closes:
            assert await reader.read() == b"", "the server should close the connection"
    writer.close()
    return events


def frame(event_type: str, data: dict | None = None, payload: bytes = b"") -> bytes:
    body = json.dumps(data or {}).encode()
    header = {"type": event_type, "data_length": len(body), "payload_length": len(payload)}
    return json.dumps(header).encode() + b"\n" + body + payload


async def test_describe_ping_and_echo(server: ServiceServer) -> None:
    events = await roundtrip(
        server,
        frame("describe"),
        frame("ping", {"text": "hi"}),
        frame("echo", {"a": 1}, b"\x01\x02"),
        count=3,
    )
    assert [e.type for e in events] == ["info", "pong", "echoed"]
    assert events[0].data["tts"][0]["name"] == "echo"
    assert events[1].data == {"text": "hi"}
    assert events[2].data == {"a": 1} and events[2].payload == b"\x01\x02"


@pytest.mark.parametrize(
    ("raw", "code", "text"),
    [
        (b"this is not json\n", "bad-frame", "header is not JSON"),
        (b'{"data": {}}\n', "bad-frame", "string 'type'"),
        (b'{"type": "echo", "data_length": -1}\n', "bad-frame", "data_length must be a non-negative"),
        (b'{"type": "echo", "data_length": 5000}\n', "too-large", "data_length 5000 exceeds"),
        (b'{"type": "echo", "payload_length": 99999}\n', "too-large", "payload_length 99999 exceeds"),
        (b'{"type": "echo", "data_length": 3}\nabc', "bad-frame", "event data is not JSON"),
        (b'{"type": "x"' + b" " * 5000 + b"}\n", "bad-frame", "header line longer than"),
    ],
)
async def test_malformed_frames_get_an_error_and_a_clean_close(
    server: ServiceServer, raw: bytes, code: str, text: str
) -> None:
    events = await roundtrip(server, raw, count=1, closes=True)
    assert len(events) == 1, events
    error = Error.from_event(events[0])
    assert error.code == code and text in error.text
    # The server keeps serving other clients.
    assert [e.type for e in await roundtrip(server, frame("ping"), count=1)] == ["pong"]


async def test_client_errors_keep_the_connection(server: ServiceServer) -> None:
    events = await roundtrip(server, frame("bad"), frame("whatever"), frame("ping"), count=3)
    assert [e.type for e in events] == ["error", "error", "pong"]
    assert Error.from_event(events[0]).text == "that request is bad"
    assert Error.from_event(events[1]).code == "unexpected"
    assert "'whatever'" in Error.from_event(events[1]).text


async def test_crash_in_a_handler_is_reported_and_server_survives(
    server: ServiceServer, caplog: pytest.LogCaptureFixture
) -> None:
    events = await roundtrip(server, frame("boom"), frame("ping"), count=2, closes=True)
    assert [e.type for e in events] == ["error"], "the broken connection is closed"
    assert Error.from_event(events[0]).code == "internal"
    assert "kaboom" in caplog.text
    assert [e.type for e in await roundtrip(server, frame("ping"), count=1)] == ["pong"]


async def test_client_dropping_mid_frame_does_not_hurt(server: ServiceServer) -> None:
    _reader, writer = await connect(server)
    writer.write(b'{"type": "echo", "payload_length": 1000}\n' + b"x" * 10)
    await writer.drain()
    writer.close()
    assert [e.type for e in await roundtrip(server, frame("ping"), count=1)] == ["pong"]


async def test_wyoming_library_client_interoperates(server: ServiceServer) -> None:
    reader, writer = await connect(server)
    await async_write_event(Event("echo", {"x": "ü"}), writer)
    async with asyncio.timeout(5):
        event = await async_read_event(reader)
    assert event is not None and event.data == {"x": "ü"}
    writer.close()


def test_bad_uris_are_rejected() -> None:
    for uri in ("http://x:1", "tcp://127.0.0.1", "tcp://:10"):
        with pytest.raises(ValueError):
            ServiceServer(uri, partial(EchoService, info=info))


async def test_unix_socket_serves_and_has_no_port(tmp_path) -> None:
    path = tmp_path / "echo.sock"
    server = ServiceServer(f"unix://{path}", partial(EchoService, info=info, limits=LIMITS))
    await server.start()
    try:
        assert server.port is None
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_unix_connection(str(path))
            await async_write_event(Event("ping"), writer)
            event = await async_read_event(reader)
        assert event is not None and event.type == "pong"
        writer.close()
    finally:
        await server.close()
