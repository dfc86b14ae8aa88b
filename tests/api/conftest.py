"""Fixtures for the control API tests: a manager on a copy of the shipped personas, Wyoming services."""

from __future__ import annotations

import asyncio
import functools
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from wyoming.info import AsrModel, AsrProgram, Attribution, Info

from wyoming_persona.personas import PersonaManager
from wyoming_persona.wyoming_server import ServiceServer, WyomingService


@pytest.fixture
def manager(personas_dir: Path, state_dir: Path) -> PersonaManager:
    return PersonaManager(personas_dir, state_dir, refresh_interval=0.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _DescribeOnly(WyomingService):
    async def handle_event(self, event) -> bool:
        raise self.unexpected(event)


def _asr_info() -> Info:
    attribution = Attribution(name="test", url="https://example.invalid")
    model = AsrModel(
        name="tiny",
        attribution=attribution,
        installed=True,
        description="test model",
        version="1",
        languages=["en"],
    )
    program = AsrProgram(
        name="fake-asr",
        attribution=attribution,
        installed=True,
        description="describe-only test service",
        version="1",
        models=[model],
    )
    return Info(asr=[program])


@pytest.fixture
async def wyoming_service() -> AsyncIterator[str]:
    """A real Wyoming server (the project's ServiceServer) that answers describe; yields its URI."""
    server = ServiceServer("tcp://127.0.0.1:0", functools.partial(_DescribeOnly, info=_asr_info))
    await server.start()
    try:
        yield f"tcp://127.0.0.1:{server.port}"
    finally:
        await server.close()


@pytest.fixture
async def silent_service() -> AsyncIterator[str]:
    """Accepts connections and never answers: the health probe must time out."""
    writers: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"tcp://127.0.0.1:{port}"
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


# -- a real Mosquitto broker --------------------------------------------------------------------
class Mosquitto:
    """A private mosquitto on a free loopback port; `kill()` and `start()` again keep the port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "log_dest stderr\nlog_type error\nlog_type warning\n"
        )
        self.log = workdir / "mosquitto.log"
        self.process: asyncio.subprocess.Process | None = None
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(self.binary).exists():
            pytest.fail("mosquitto is not installed: run scripts/ensure-mosquitto.sh")

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                self.binary, "-c", str(self.conf), stdout=log, stderr=log
            )
        async with asyncio.timeout(15):
            while True:
                if self.process.returncode is not None:
                    pytest.fail(f"mosquitto exited: {self.log.read_text()}")
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                await writer.wait_closed()
                return

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            async with asyncio.timeout(15):
                await self.process.wait()
        self.process = None


@pytest.fixture
async def mosquitto(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    broker = Mosquitto(tmp_path)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.kill()
