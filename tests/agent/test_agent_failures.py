"""Failures of the embedded model end the reply at once, with the real cause, logged once."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator

import pytest

from wyoming_persona.agent.backends import BackendError, ChatRequest
from wyoming_persona.agent.backends.embedded import LlamaCppChatBackend
from wyoming_persona.agent.chat import ChatSettings
from wyoming_persona.agent.shaping import speakable_piece

from .conftest import handled, persona_server, say

pytestmark = pytest.mark.model

WAIT = 20  # seconds; far below the 60 s reply timeout the server is given
EMBEDDED_LOGGER = "wyoming_persona.agent.backends.embedded"
REQUEST = ChatRequest(
    messages=({"role": "user", "content": "Count from one to twenty."},), temperature=0.0, max_tokens=40
)


class FailingLlama:
    """The real model, whose chat stream raises `error` after `after` chunks (0: before the first)."""

    def __init__(self, llama, error: BaseException, after: int) -> None:
        self.llama = llama
        self.error = error
        self.after = after
        self.started = threading.Event()
        self.release = threading.Event()
        self.block = False

    def create_chat_completion(self, **kwargs) -> Iterator[dict]:
        self.started.set()
        if self.block:  # hold the worker thread so that the next generation waits in the queue
            self.release.wait(WAIT)
        chunks = self.llama.create_chat_completion(**kwargs)

        def failing() -> Iterator[dict]:
            try:
                for index, chunk in enumerate(chunks):
                    if index == self.after:
                        raise self.error
                    yield chunk
            finally:
                chunks.close()

        return failing()

    def close(self) -> None:
        """The shared model stays loaded for the other tests."""

    def __getattr__(self, name: str):
        return getattr(self.llama, name)


@pytest.fixture
def failing(smollm2):
    backends: list[LlamaCppChatBackend] = []

    def make(error: BaseException, after: int) -> LlamaCppChatBackend:
        backend = LlamaCppChatBackend(smollm2.settings, FailingLlama(smollm2._llama, error, after))
        backends.append(backend)
        return backend

    yield make
    for backend in backends:
        backend._llama.release.set()
        backend._executor.shutdown(wait=True)


def tracebacks(caplog, kind: type[BaseException]) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], kind)]


async def collect(backend: LlamaCppChatBackend) -> list[str]:
    async with asyncio.timeout(WAIT):
        return [delta.text async for delta in backend.stream(REQUEST)]


async def test_unexpected_error_mid_stream_ends_the_stream_with_its_cause(failing, caplog) -> None:
    backend = failing(TypeError("unsupported operand type(s)"), after=3)
    with pytest.raises(BackendError, match="TypeError: unsupported operand") as caught:
        await collect(backend)
    assert isinstance(caught.value.__cause__, TypeError)
    assert len(tracebacks(caplog, TypeError)) == 1
    # The worker thread is free again: the next generation runs (and fails the same way).
    with pytest.raises(BackendError):
        await collect(backend)


async def test_a_closed_backend_fails_at_once(failing) -> None:
    backend = failing(TypeError("never reached"), after=1000)
    backend._executor.shutdown()
    with pytest.raises(BackendError, match="not running"):
        await collect(backend)


async def test_a_generation_cancelled_in_the_queue_ends_its_stream(failing) -> None:
    backend = failing(TypeError("never reached"), after=1000)
    backend._llama.block = True
    first = asyncio.create_task(collect(backend))
    try:
        await asyncio.to_thread(backend._llama.started.wait, WAIT)
        second = asyncio.create_task(collect(backend))
        await asyncio.sleep(0)  # let it queue its generation behind the first one
        backend._executor.shutdown(wait=False, cancel_futures=True)
        with pytest.raises(BackendError, match="cancelled before it started"):
            await second
    finally:
        backend._llama.release.set()
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)


async def test_the_fallback_line_comes_long_before_the_timeout(failing, manager, caplog) -> None:
    backend = failing(OSError("model file vanished"), after=0)
    fallback = speakable_piece(manager.active().spec.fallbacks.backend_down)
    async with persona_server(manager, backend, ChatSettings(timeout=60)) as (server, _):
        events = await say(server.port, "Hello there.", "conv", wait=WAIT)
        # The server keeps serving: the next turn gets the same definite answer.
        again = await say(server.port, "Are you there?", "conv", wait=WAIT)
    for reply in (events, again):
        assert [e.type for e in reply] == ["handled-start", "handled-chunk", "handled", "handled-stop"]
        assert handled(reply).data["text"] == fallback
    assert len(tracebacks(caplog, OSError)) == 2  # once per failed generation, where it was caught
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("OSError: model file vanished" in text for text in warnings), warnings
