"""unix:// serving: a stale socket of a killed server is replaced, a live one or a plain file never is."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import pytest
from wyoming.event import async_read_event, async_write_event
from wyoming.ping import Ping

from wyoming_persona.wyoming_server import ServiceServer, SocketPathError

from .test_wyoming_server import EchoService, info

WAIT = 10


def unix_server(path: Path | str) -> ServiceServer:
    return ServiceServer(f"unix://{path}", partial(EchoService, info=info))


@pytest.fixture
def sock_path() -> Iterator[Path]:
    """A socket path in a short private folder: sun_path holds only 108 bytes, pytest's tmp_path may not."""
    with tempfile.TemporaryDirectory(prefix="wp-sock-") as folder:
        yield Path(folder) / "w.sock"


async def ping(path: Path | str) -> str | None:
    async with asyncio.timeout(WAIT):
        reader, writer = await asyncio.open_unix_connection(str(path))
        try:
            await async_write_event(Ping(text="hi").event(), writer)
            event = await async_read_event(reader)
        finally:
            writer.close()
            await writer.wait_closed()
    return event.data.get("text") if event is not None and event.type == "pong" else None


@pytest.fixture
async def live(sock_path: Path) -> AsyncIterator[ServiceServer]:
    server = unix_server(sock_path)
    await server.start()
    yield server
    await server.close()


def write_file(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def exists(path: Path) -> bool:
    return os.path.lexists(path)


def read_file(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def leave_stale_socket(path: Path) -> None:
    """What a SIGKILLed server leaves: a bound socket file with nobody listening."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen()
    sock.close()


async def test_restart_replaces_the_stale_socket_of_a_killed_server(sock_path: Path) -> None:
    leave_stale_socket(sock_path)
    assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
    server = unix_server(sock_path)
    await server.start()
    try:
        assert await ping(sock_path) == "hi"
    finally:
        await server.close()
    assert not exists(sock_path), "a server removes its own socket file on close"


async def test_a_live_server_is_never_displaced(live: ServiceServer, sock_path: Path) -> None:
    inode = os.lstat(sock_path).st_ino
    second = unix_server(sock_path)
    with pytest.raises(SocketPathError, match=r"another server is listening on .*w\.sock"):
        await second.start()
    await second.close()  # closing a server that never started leaves the live socket alone
    assert os.lstat(sock_path).st_ino == inode
    assert await ping(sock_path) == "hi", "the first server still serves"


async def test_a_regular_file_is_never_replaced(sock_path: Path) -> None:
    write_file(sock_path, "precious")
    server = unix_server(sock_path)
    with pytest.raises(SocketPathError, match=r"w\.sock exists and is not a socket"):
        await server.start()
    assert read_file(sock_path) == "precious"


async def test_close_keeps_a_socket_that_another_server_took_over(sock_path: Path) -> None:
    first = unix_server(sock_path)
    await first.start()
    os.unlink(sock_path)  # someone removed it by hand and started another server there
    second = unix_server(sock_path)
    await second.start()
    try:
        await first.close()
        assert await ping(sock_path) == "hi"
    finally:
        await second.close()
    assert not exists(sock_path)


async def test_a_relative_unix_path_is_served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    server = unix_server("relative.sock")
    await server.start()
    try:
        assert await ping(tmp_path / "relative.sock") == "hi"
    finally:
        await server.close()
    assert not exists(tmp_path / "relative.sock")


def test_a_unix_uri_needs_a_path() -> None:
    with pytest.raises(ValueError, match="needs a path"):
        unix_server("")
