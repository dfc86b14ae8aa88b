"""The OpenAI-compatible backend against an in-test server streaming chat-completion SSE."""

from __future__ import annotations

from wyoming_persona.agent.backends import OpenAISettings
from wyoming_persona.agent.backends.openai import OpenAIChatBackend
from wyoming_persona.agent.chat import ChatSettings
from wyoming_persona.personas import build_system_prompt

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
    assert body["messages"] == [
        {"role": "system", "content": build_system_prompt(coach)},
        {"role": "user", "content": "Motivate me!"},
    ]
    assert body2["messages"][1:] == [
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


async def test_http_error_and_hang_give_the_fallback_then_recover(fake_openai, manager):
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


async def test_client_disconnect_stops_the_stream(fake_openai, manager):
    from .test_agent_ollama import assert_disconnect_stops

    fake_openai.mode = "endless"
    await assert_disconnect_stops(fake_openai, manager, openai(fake_openai))
