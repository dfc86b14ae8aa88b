"""A reply written after the client is gone ends the connection quietly, on 3.11 and on 3.13.

Python 3.12+ asyncio raises TypeError from `writelines()` (what wyoming writes events with) once a
connection is lost (CPython gh-136234); 3.11 raised ConnectionResetError from `drain()` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import AsyncIterator
from functools import partial

import pytest
from wyoming.event import Event, async_read_event, async_write_event
from wyoming.ping import Ping

from wyoming_persona.wyoming_server import ServiceServer, WyomingService

from .test_wyoming_server import info


class LateService(WyomingService):
    """Answers `late` only after its client's connection is lost, as a long synthesis may."""

    def __init__(self, *args, ended: asyncio.Queue[int], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._ended = ended

    async def handle_event(self, event: Event) -> bool:
        if event.type != "late":
            raise self.unexpected(event)
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(10):
                await self.reader.read()  # until the client is gone
        await self.write_event(Event("reply"))
        await self.write_event(Event("reply"))
        return True

    async def disconnect(self) -> None:
        self._ended.put_nowait(self.connection_id)


@pytest.fixture
async def ended() -> asyncio.Queue[int]:
    return asyncio.Queue()


@pytest.fixture
async def server(ended: asyncio.Queue[int]) -> AsyncIterator[ServiceServer]:
    server = ServiceServer("tcp://127.0.0.1:0", partial(LateService, info=info, ended=ended))
    await server.start()
    yield server
    await server.close()


async def test_writing_to_a_reset_connection_ends_it_without_an_error(
    server: ServiceServer, ended: asyncio.Queue[int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with asyncio.timeout(10):
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await async_write_event(Event("late"), writer)
        # The client dies: a reset, not a goodbye.
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        await ended.get()

    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert "client went away" in caplog.text

    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await async_write_event(Ping().event(), writer)
        pong = await async_read_event(reader)
    writer.close()
    assert pong is not None and pong.type == "pong"
