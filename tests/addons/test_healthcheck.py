"""The add-on images' HEALTHCHECK (`python -m wyoming_persona.healthcheck`) against real sockets."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from wyoming.event import Event
from wyoming.info import AsrModel, AsrProgram, Attribution, Describe, Info
from wyoming.server import AsyncEventHandler, AsyncTcpServer

from wyoming_persona.healthcheck import main

REPO = Path(__file__).resolve().parents[2]
INFO = Info(
    asr=[
        AsrProgram(
            name="probe",
            attribution=Attribution(name="test", url="https://example.invalid"),
            installed=True,
            description="answers describe",
            version="1",
            models=[
                AsrModel(
                    name="m",
                    attribution=Attribution(name="test", url="https://example.invalid"),
                    installed=True,
                    description="m",
                    version="1",
                    languages=["en"],
                )
            ],
        )
    ]
)


class Answering(AsyncEventHandler):
    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(INFO.event())
        return True


class Silent(AsyncEventHandler):
    """Accepts the connection and reads, but never answers: a stuck service with an open port."""

    async def handle_event(self, event: Event) -> bool:
        return True


async def _serve(handler: type[AsyncEventHandler]) -> AsyncIterator[str]:
    server = AsyncTcpServer("127.0.0.1", 0)
    await server.start(handler)
    port = server._server.sockets[0].getsockname()[1]  # port 0: the one the OS chose
    try:
        yield f"tcp://127.0.0.1:{port}"
    finally:
        await server.stop()


@pytest.fixture
async def answering() -> AsyncIterator[str]:
    async for uri in _serve(Answering):
        yield uri


@pytest.fixture
async def silent() -> AsyncIterator[str]:
    async for uri in _serve(Silent):
        yield uri


async def _main(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_healthy_when_the_service_describes_itself(answering: str) -> None:
    assert await _main(answering, "--timeout", "10") == 0


async def test_unhealthy_when_the_port_is_open_but_nothing_answers(
    silent: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _main(silent, "--timeout", "0.5") == 1
    assert "gave no info within 0.5 s" in capsys.readouterr().err


async def test_unhealthy_when_nothing_listens(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    assert await _main(f"tcp://127.0.0.1:{port}", "--timeout", "5") == 1
    assert "unhealthy: tcp://127.0.0.1:" in capsys.readouterr().err


async def test_runs_as_the_dockerfile_calls_it(answering: str) -> None:
    """`python -m wyoming_persona.healthcheck URI`: what each add-on's HEALTHCHECK runs."""
    process = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "wyoming_persona.healthcheck", answering],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 0, process.stderr
