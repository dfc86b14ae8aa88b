"""Reliability fixtures: servers on their own event-loop thread, a crash watch, the real models, and a
fake Ollama server that can die in the middle of a reply, plus the session summary of the figures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from wyoming_persona.asr.models import resolve_model
from wyoming_persona.asr.transcriber import WhisperSettings, WhisperTranscriber
from wyoming_persona.tts.pool import VoicePool
from wyoming_persona.tts.voices import VoiceFile
from wyoming_persona.tts.worker import PiperWorker
from wyoming_persona.wyoming_server import HandlerFactory, ServiceServer

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

T = TypeVar("T")
FIGURES = pytest.StashKey[list[str]]()
"""One summary line per fuzzed server, printed at the end of the session."""


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    lines = config.stash.get(FIGURES, [])
    if lines:
        terminalreporter.section("reliability figures")
        for line in lines:
            terminalreporter.write_line(line)


def add_figures(config: pytest.Config, line: str) -> None:
    config.stash.setdefault(FIGURES, []).append(line)
    print(f"\n{line}")


# -- crash watch ------------------------------------------------------------------------------------
class CrashWatch(logging.Handler):
    """Collects ERROR records of the services and asyncio: each one is an unhandled failure."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("wyoming_persona", "asyncio")):
            with self._lock:
                self.records.append(record)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.records)

    def since(self, start: int) -> list[str]:
        with self._lock:
            return [_describe(record) for record in self.records[start:]]


def _describe(record: logging.LogRecord) -> str:
    text = f"{record.name}: {record.getMessage()}"
    if record.exc_info and record.exc_info[1] is not None:
        text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
    return text


@pytest.fixture(scope="module")
def crash_watch() -> Iterator[CrashWatch]:
    watch = CrashWatch()
    root = logging.getLogger()
    root.addHandler(watch)
    yield watch
    root.removeHandler(watch)


# -- a server on its own loop -----------------------------------------------------------------------
class ThreadedServer:
    """A ServiceServer on a private event loop in a daemon thread, so module-scoped servers outlive
    each test's own loop (hypothesis runs every example as a plain function)."""

    def __init__(self, name: str, build: Callable[[], HandlerFactory], watch: CrashWatch) -> None:
        self.watch = watch
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self._loop_error)
        self._thread = threading.Thread(target=self.loop.run_forever, name=f"server-{name}", daemon=True)
        self._thread.start()
        self.server: ServiceServer = self.call(self._start(build))

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self, build: Callable[[], HandlerFactory]) -> ServiceServer:
        server = ServiceServer("tcp://127.0.0.1:0", build())  # built here: loop-bound objects bind to us
        await server.start()
        return server

    async def _stop(self) -> None:
        await self.server.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.loop.shutdown_default_executor()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        # Routed through logging so the crash watch sees it like any other unhandled failure.
        error = context.get("exception")
        logging.getLogger("asyncio").error(
            "server loop: %s", context.get("message"), exc_info=(type(error), error, None) if error else None
        )

    def close(self) -> None:
        try:
            self.call(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)
            self.loop.close()


# -- the real models --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def whisper() -> Iterator[WhisperTranscriber]:
    """Whisper tiny.en, loaded once for the reliability tests."""
    transcriber = WhisperTranscriber(WhisperSettings(resolve_model("tiny.en"), "tiny.en", cpu_threads=2))
    yield transcriber
    transcriber.close()


@pytest.fixture(scope="session")
def piper_workers() -> Iterator[Callable[[VoiceFile], PiperWorker]]:
    """A worker factory for `VoicePool` that loads each Piper voice once per session (a worker's
    load is idempotent and its executor thread is not tied to an event loop)."""
    workers: dict[tuple[str, str], PiperWorker] = {}

    def factory(voice: VoiceFile) -> PiperWorker:
        key = VoicePool.key(voice)
        if key not in workers:
            workers[key] = PiperWorker(voice)
        return workers[key]

    yield factory
    for worker in workers.values():
        worker.close()


@pytest.fixture(scope="session")
def smollm2() -> Iterator[Any]:
    """SmolLM2-135M-Instruct through llama.cpp (the embedded backend), loaded once."""
    from wyoming_persona.agent.backends import EmbeddedSettings
    from wyoming_persona.agent.backends.embedded import LlamaCppChatBackend

    backend = LlamaCppChatBackend.load(EmbeddedSettings(seed=0, n_ctx=2048, n_threads=2))
    yield backend
    asyncio.run(backend.close())


# -- a fake Ollama that can die mid-reply -----------------------------------------------------------
@dataclass
class DyingOllama:
    """An Ollama stand-in on a raw socket: POST /api/chat answered as Ollama does (HTTP/1.1 chunked
    NDJSON, one JSON object per line), with control over how the reply ends.

    modes: "ok" (the whole reply and a done line), "die" (`die_after` lines, then the connection is
    dropped without ending the chunked body), "endless" (lines until the client hangs up),
    "hang" (nothing is sent until `release` is set, then as "ok").
    """

    reply: list[str] = field(default_factory=lambda: ["Ahoy", " matey!", " The sea", " is calm today."])
    mode: str = "ok"
    die_after: int = 2
    requests: list[dict] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    received: asyncio.Event = field(default_factory=asyncio.Event)
    client_gone: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
            body = json.loads(await reader.readexactly(int(headers.get("content-length", "0"))))
            self.requests.append(body)
            self.received.set()
            if not lines[0].startswith("POST /api/chat "):
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            if self.mode == "hang":
                await self.release.wait()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            )
            model = body.get("model", "llama3.2")
            for index, piece in enumerate(self.reply):
                if self.mode == "die" and index == self.die_after:
                    writer.transport.abort()  # mid-body: no terminating chunk, no done line
                    return
                self._chunk(writer, _part(model, piece, done=False))
                await writer.drain()
            while self.mode == "endless":
                self._chunk(writer, _part(model, " and more", done=False))
                await writer.drain()
                await asyncio.sleep(0.02)
            self._chunk(writer, _part(model, "", done=True))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            self.client_gone.set()
        finally:
            writer.close()

    @staticmethod
    def _chunk(writer: asyncio.StreamWriter, line: bytes) -> None:
        writer.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")


def _part(model: str, content: str, done: bool) -> bytes:
    """One line of Ollama's /api/chat stream (the fields its documentation shows)."""
    part: dict = {
        "model": model,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
        "message": {"role": "assistant", "content": content},
        "done": done,
    }
    if done:
        part.update(done_reason="stop", total_duration=4883583458, eval_count=12, eval_duration=453559900)
    return json.dumps(part).encode() + b"\n"


@pytest.fixture
async def dying_ollama() -> AsyncIterator[DyingOllama]:
    fake = DyingOllama()
    await fake.start()
    yield fake
    await fake.close()
