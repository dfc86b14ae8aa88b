"""The OpenAI-compatible backend against an in-test server streaming chat-completion SSE: the exact
request on the wire, and failures the real server (test_agent_openai_server.py) cannot be made to show:
an OpenAI-style error body, a hang, a client hang-up, a stream with `[DONE]` but no finish reason."""

from __future__ import annotations

import logging

from wyoming_persona.agent.backends import OpenAISettings
from wyoming_persona.agent.backends.base import ChatRequest
from wyoming_persona.agent.backends.openai import OpenAIChatBackend
from wyoming_persona.agent.chat import ChatSettings
from wyoming_persona.personas import persona_messages

from .conftest import assert_stream_order, handled, persona_server, say


def openai(fake, api_key: str | None = "sk-test") -> OpenAIChatBackend:
    return OpenAIChatBackend(OpenAISettings(base_url=fake.url, model="test-model", api_key=api_key, seed=3))


async def test_streamed_reply_and_what_the_client_sends(fake_openai, manager):
    manager.set_active("coach")
    coach = manager.get("coach")
    backend = openai(fake_openai)
    async with persona_server(manager, backend) as (server, _):
        first = await say(server.port, "Motivate me!", "c1")
        second = await say(server.port, "More!", "c1")
    await backend.close()

    assert_stream_order(first)
    assert [e.data["text"] for e in first if e.type == "handled-chunk"] == [
        "Ahoy matey!",
        " The sea is calm today.",
    ]
    body, body2 = fake_openai.requests
    assert fake_openai.headers[0]["Authorization"] == "Bearer sk-test"
    assert body["model"] == "test-model"
    assert body["stream"] is True
    assert body["temperature"] == coach.llm.temperature
    assert body["max_tokens"] == coach.llm.max_reply_tokens
    assert body["seed"] == 3
    assert body["top_p"] == coach.llm.top_p
    assert body["repeat_penalty"] == coach.llm.repeat_penalty
    preamble = persona_messages(coach)
    assert body["messages"] == [*preamble, {"role": "user", "content": "Motivate me!"}]
    assert body2["messages"][len(preamble) :] == [
        {"role": "user", "content": "Motivate me!"},
        {"role": "assistant", "content": handled(first).data["text"]},
        {"role": "user", "content": "More!"},
    ]
    assert handled(second).data["context"]["conversation_id"] == "c1"


async def test_no_api_key_sends_no_authorization(fake_openai, manager):
    backend = openai(fake_openai, api_key=None)
    async with persona_server(manager, backend) as (server, _):
        await say(server.port, "Hi?")
    await backend.close()
    assert "Authorization" not in fake_openai.headers[0]


async def test_http_error_and_hang_give_the_fallback_then_recover(fake_openai, manager, caplog):
    caplog.set_level(logging.WARNING)
    fallback = manager.active().spec.fallbacks.backend_down
    backend = openai(fake_openai)
    async with persona_server(manager, backend, ChatSettings(timeout=0.5)) as (server, _):
        fake_openai.mode = "error"
        errored = await say(server.port, "Hi?", "c")
        fake_openai.mode = "hang"
        hung = await say(server.port, "Hi?", "c")
        fake_openai.mode = "ok"
        fake_openai.release.set()
        recovered = await say(server.port, "Hi?", "c")
    await backend.close()
    assert handled(errored).data["text"] == fallback
    assert handled(hung).data["text"] == fallback
    assert handled(recovered).data["text"] == "Ahoy matey! The sea is calm today."
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "answered HTTP 500: Internal error;" in warning, warning  # OpenAI's error.message


async def test_done_without_a_finish_reason_ends_the_reply_cleanly(fake_openai, manager):
    fake_openai.done_reason = None  # the last chunk says nothing; `data: [DONE]` ends the stream
    backend = openai(fake_openai)
    async with persona_server(manager, backend) as (server, chat):
        events = await say(server.port, "Hi?", "c")
    await backend.close()
    assert_stream_order(events)
    assert handled(events).data["text"] == "Ahoy matey! The sea is calm today."
    assert chat.store.turns("c", manager.active().id) != []  # a finished reply goes into the history


async def test_client_disconnect_stops_the_stream(fake_openai, manager):
    from .test_agent_ollama import assert_disconnect_stops

    fake_openai.mode = "endless"
    await assert_disconnect_stops(fake_openai, manager, openai(fake_openai))


async def test_a_persona_model_for_the_embedded_backend_is_not_sent_to_the_server(fake_openai):
    backend = openai(fake_openai)
    messages = ({"role": "user", "content": "Hi"},)
    for model in ("smollm2", "served-model"):
        async for _ in backend.stream(ChatRequest(messages=messages, model=model)):
            pass
    await backend.close()
    assert [body["model"] for body in fake_openai.requests] == ["test-model", "served-model"]
