"""Who may use the Ollama-compatible API and what it takes: the bearer token (raw HTTP and the official
`ollama` client, which HA's integration uses), the body limit, and pinned models that never switch
the active persona."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator

import aiohttp
import ollama
import pytest

from wyoming_persona.agent.chat import ChatSettings, PersonaChat
from wyoming_persona.agent.history import ConversationStore
from wyoming_persona.agent.ollama_api import ExposureError, bound_port, check_exposure, start
from wyoming_persona.personas import PersonaManager, build_system_prompt

from .test_ollama_api import HA_SYSTEM, WAIT, ScriptedBackend

TOKEN = "t0ken-for-the-ollama-api"
LIMIT = 1024 * 1024
"""The body limit (1 MiB): HA sends 6-9 KB, a 128k-token context holds about 0.5 MB."""
HI = [{"role": "user", "content": "Hi"}]


@contextlib.asynccontextmanager
async def api(manager, backend, token: str | None = None) -> AsyncIterator[str]:
    chat = PersonaChat(manager, backend, ConversationStore(), ChatSettings(timeout=WAIT))
    runner = await start(chat, "127.0.0.1", 0, token)
    try:
        yield f"http://127.0.0.1:{bound_port(runner)}"
    finally:
        await runner.cleanup()


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT))


# -- the token --------------------------------------------------------------------------------------
ENDPOINTS = [
    ("GET", "/", None),
    ("GET", "/api/version", None),
    ("GET", "/api/tags", None),
    ("POST", "/api/show", {"model": "pirate"}),
    ("POST", "/api/chat", {"model": "persona", "messages": HI, "stream": False}),
]
REFUSED = [
    {},
    {"Authorization": "Bearer wrong"},
    {"Authorization": TOKEN},  # no scheme
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": f"Bearer {TOKEN}x"},
]


async def test_with_a_token_every_endpoint_needs_it(manager):
    backend = ScriptedBackend()
    async with api(manager, backend, TOKEN) as url, session() as http:
        for method, path, body in ENDPOINTS:
            for headers in REFUSED:
                async with http.request(method, url + path, json=body, headers=headers) as response:
                    refused = (response.status, await response.json(), response.headers["WWW-Authenticate"])
                assert refused[0] == 401, (path, headers)
                assert "missing or wrong bearer token" in refused[1]["error"]
                assert refused[2].startswith("Bearer")
            authorised = {"Authorization": f"Bearer {TOKEN}"}
            async with http.request(method, url + path, json=body, headers=authorised) as response:
                assert response.status == 200, (path, await response.text())
    assert len(backend.requests) == 1, "only the authorised chat reached the model"


async def test_the_official_client_sends_the_token_as_home_assistant_does(manager, monkeypatch):
    """HA's Ollama integration passes its *API key* as `headers={"Authorization": "Bearer ..."}`;
    a 401 makes it ask the user for the key again (ConfigEntryAuthFailed)."""
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)  # the client would send it as a bearer token
    async with api(manager, ScriptedBackend(), TOKEN) as url:
        good = ollama.AsyncClient(host=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=WAIT)
        bad = ollama.AsyncClient(host=url, timeout=WAIT)
        try:
            async with asyncio.timeout(WAIT):
                listed = await good.list()
                reply = await good.chat(model="pirate", messages=HI, stream=False)
                with pytest.raises(ollama.ResponseError) as refused:
                    await bad.list()
                with pytest.raises(ollama.ResponseError) as refused_chat:
                    await bad.chat(model="pirate", messages=HI, stream=False)
        finally:
            await good.close()
            await bad.close()
    assert "pirate:latest" in [model.model for model in listed.models]
    assert reply.message.content == "Ahoy matey! The sea is calm today."
    assert refused.value.status_code == 401 and refused_chat.value.status_code == 401


async def test_without_a_token_no_header_is_needed(manager):
    async with (
        api(manager, ScriptedBackend()) as url,
        session() as http,
        http.get(url + "/api/tags") as response,
    ):
        assert response.status == 200


@pytest.mark.parametrize(
    ("host", "token", "unauthenticated", "refused"),
    [
        ("127.0.0.1", None, False, False),
        ("::1", None, False, False),
        ("localhost", None, False, False),
        ("0.0.0.0", None, False, True),
        ("", None, False, True),  # aiohttp: every address
        ("192.168.1.5", None, False, True),
        ("homeassistant.local", None, False, True),
        ("0.0.0.0", TOKEN, False, False),
        ("0.0.0.0", None, True, False),
    ],
)
def test_only_loopback_is_served_without_a_token_unless_asked(host, token, unauthenticated, refused):
    if refused:
        with pytest.raises(ExposureError, match="is not a loopback address"):
            check_exposure(host, token, unauthenticated)
    else:
        check_exposure(host, token, unauthenticated)


# -- the body limit ---------------------------------------------------------------------------------
def _chat_body(size: int) -> bytes:
    """A chat request of exactly `size` bytes (a long user message)."""
    empty = json.dumps({"model": "persona", "messages": [{"role": "user", "content": ""}], "stream": False})
    body = json.dumps(
        {
            "model": "persona",
            "messages": [{"role": "user", "content": "x" * (size - len(empty))}],
            "stream": False,
        }
    ).encode()
    assert len(body) == size
    return body


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start_at in range(0, len(data), size):
        yield data[start_at : start_at + size]


async def test_a_body_over_the_limit_is_a_413_and_the_server_keeps_serving(manager):
    backend = ScriptedBackend()
    over = _chat_body(LIMIT + 1)
    async with api(manager, backend) as url, session() as http:
        # with Content-Length: refused before it is read
        async with http.post(url + "/api/chat", data=io.BytesIO(over)) as response:
            declared = (response.status, await response.json())
        # chunked, no length: cut at the limit while it is read
        async with http.post(url + "/api/chat", data=_chunks(over)) as response:
            chunked = (response.status, await response.json())
        async with http.post(url + "/api/chat", data=io.BytesIO(_chat_body(LIMIT))) as response:
            at_limit = response.status
        async with http.get(url + "/api/tags") as response:
            after = response.status
    message = f"request body larger than {LIMIT} bytes (1 MiB), the limit of this API"
    assert declared == (413, {"error": message})
    assert chunked == (413, {"error": message})
    assert (at_limit, after) == (200, 200)
    assert len(backend.requests) == 1, "only the request at the limit reached the model"


async def test_a_large_home_fits_well_within_the_limit(manager):
    """HA's prompt for a home with 2,000 exposed entities (about 110 KB) is answered."""
    entities = "".join(f"- names: Lamp {n}\n  domain: light\n  areas: Room {n % 40}\n" for n in range(2000))
    messages = [{"role": "system", "content": HA_SYSTEM + entities}, *HI]
    body = json.dumps({"model": "persona", "messages": messages, "stream": False}).encode()
    assert 100_000 < len(body) < LIMIT
    backend = ScriptedBackend()
    async with (
        api(manager, backend) as url,
        session() as http,
        http.post(url + "/api/chat", data=body) as response,
    ):
        assert response.status == 200, await response.text()
    assert "Lamp 1999" in backend.requests[0].messages[0]["content"]


async def test_with_a_token_an_oversized_request_without_it_is_a_401(manager):
    """The token is checked first: a stranger learns nothing about the limits."""
    async with (
        api(manager, ScriptedBackend(), TOKEN) as url,
        session() as http,
        http.post(url + "/api/chat", data=io.BytesIO(_chat_body(LIMIT + 1))) as response,
    ):
        assert response.status == 401


# -- pinned models ----------------------------------------------------------------------------------
async def test_a_pinned_model_never_switches_the_active_persona(manager, personas_dir, state_dir):
    manager.set_active("coach")
    backend = ScriptedBackend()
    switch = [{"role": "system", "content": HA_SYSTEM}, {"role": "user", "content": "Switch to the butler"}]
    async with api(manager, backend) as url:
        client = ollama.AsyncClient(host=url, timeout=WAIT)
        try:
            async with asyncio.timeout(WAIT):
                streamed = [p async for p in await client.chat(model="pirate", messages=switch, stream=True)]
                whole = await client.chat(
                    model="robot:latest",
                    messages=[{"role": "user", "content": "Put me through to Jeeves"}],
                    stream=False,
                )
                after = await client.chat(model="persona", messages=HI, stream=False)
        finally:
            await client.close()
    assert (
        "".join(p.message.content or "" for p in streamed) == "This agent always answers as Captain Barnacle."
    )
    assert streamed[-1].done and streamed[-1].model == "pirate"
    assert whole.message.content == "This agent always answers as Unit Seven." and whole.done
    assert manager.active().id == "coach"
    assert PersonaManager(personas_dir, state_dir).active().id == "coach", "the shared state is unchanged"
    # no LLM for the refused switches; the `persona` model still answers as the active persona
    assert after.model == "persona"
    [request] = backend.requests
    assert request.messages[0]["content"] == build_system_prompt(manager.get("coach"))


async def test_other_commands_through_a_pinned_model_answer_as_that_persona(manager):
    manager.set_active("coach")
    backend = ScriptedBackend()
    async with api(manager, backend) as url:
        client = ollama.AsyncClient(host=url, timeout=WAIT)
        try:
            async with asyncio.timeout(WAIT):
                who = await client.chat(
                    model="pirate", messages=[{"role": "user", "content": "Who are you?"}], stream=False
                )
                unknown = await client.chat(
                    model="pirate",
                    messages=[{"role": "user", "content": "Switch persona to Gandalf"}],
                    stream=False,
                )
        finally:
            await client.close()
    assert "Captain Barnacle" in who.message.content
    assert unknown.message.content.startswith("I don't know Gandalf.")
    assert manager.active().id == "coach" and backend.requests == []


async def test_the_persona_model_still_switches(manager):
    manager.set_active("coach")
    async with api(manager, ScriptedBackend()) as url:
        client = ollama.AsyncClient(host=url, timeout=WAIT)
        try:
            async with asyncio.timeout(WAIT):
                reply = await client.chat(
                    model="persona",
                    messages=[{"role": "user", "content": "Switch to the butler"}],
                    stream=False,
                )
        finally:
            await client.close()
    assert reply.message.content == manager.get("butler").greeting
    assert manager.active().id == "butler"
