"""The Ollama-compatible API of the persona service, driven by the official `ollama` client (what Home
Assistant's Ollama integration uses) and by raw HTTP for malformed requests and hang-ups."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import aiohttp
import ollama
import pytest

from wyoming_persona.agent.backends import BackendError, ChatRequest, Delta, ToolCall
from wyoming_persona.agent.chat import ChatSettings, PersonaChat
from wyoming_persona.agent.ha_context import GENERIC_LINES, HEADING, device_context
from wyoming_persona.agent.history import ConversationStore
from wyoming_persona.agent.ollama_api import bound_port, start
from wyoming_persona.personas import build_system_prompt, persona_messages

WAIT = 30.0
HA_SYSTEM = (
    "You are a voice assistant for Home Assistant.\n"
    "Answer questions about the world truthfully.\n"
    "Answer in plain text. Keep it simple and to the point.\n"
    "When controlling Home Assistant always call the intent tools. "
    "Use HassTurnOn to lock and HassTurnOff to unlock a lock.\n"
    "This device is not able to start timers.\n"
    "Static Context: An overview of the areas and the devices in this smart home:\n"
    "- names: Kitchen Light\n  domain: light\n  areas: Kitchen\n"
    "- names: Garage Door\n  domain: cover\n  areas: Garage\n"
)
TURN_ON = {
    "type": "function",
    "function": {
        "name": "HassTurnOn",
        "description": "Turns on/opens/presses a device or entity.",
        "parameters": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "area": {"type": "string"}},
            "required": [],
        },
    },
}
Script = Sequence[Delta]


@dataclass
class ScriptedBackend:
    """Answers each request with the next script (the last one repeats); `hang` waits forever after
    the script, `endless` keeps writing. Notes every request and when a stream was closed."""

    scripts: list[Script] = field(default_factory=lambda: [[Delta("Ahoy matey! The sea is calm today.")]])
    mode: str = "ok"
    """ok | hang | endless | down"""
    name: str = "scripted"
    requests: list[ChatRequest] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        self.requests.append(request)
        script = self.scripts[min(len(self.requests), len(self.scripts)) - 1]
        self.started.set()
        try:
            if self.mode == "down":
                raise BackendError("connection refused")
            for delta in script:
                yield delta
            if self.mode == "hang":
                await asyncio.Event().wait()
            while self.mode == "endless":
                yield Delta(" and more")
                await asyncio.sleep(0.01)
            yield Delta(finish_reason="stop")
        finally:
            self.closed.set()

    async def close(self) -> None:
        pass


class Api(str):
    """The API's base URL, with an official client for it (closed with the server)."""

    client: ollama.AsyncClient


@contextlib.asynccontextmanager
async def ollama_api(manager, backend, settings: ChatSettings | None = None) -> AsyncIterator[Api]:
    chat = PersonaChat(manager, backend, ConversationStore(), settings or ChatSettings(timeout=WAIT))
    runner = await start(chat, "127.0.0.1", 0)
    url = Api(f"http://127.0.0.1:{bound_port(runner)}")
    url.client = ollama.AsyncClient(host=url, timeout=WAIT)
    try:
        yield url
    finally:
        await url.client.close()
        await runner.cleanup()


def client(url: Api) -> ollama.AsyncClient:
    return url.client


async def chat_stream(url: Api, **kwargs) -> list[ollama.ChatResponse]:
    """What HA's integration sends: stream, keep_alive "-1s", num_ctx 8192."""
    kwargs.setdefault("keep_alive", "-1s")
    kwargs.setdefault("options", {"num_ctx": 8192})
    async with asyncio.timeout(WAIT):
        return [part async for part in await client(url).chat(stream=True, **kwargs)]


def content(parts: Sequence[ollama.ChatResponse]) -> str:
    return "".join(part.message.content or "" for part in parts)


# -- models ---------------------------------------------------------------------------------------
async def test_the_models_are_persona_and_each_persona(manager):
    async with ollama_api(manager, ScriptedBackend()) as url:
        async with asyncio.timeout(WAIT):
            listed = await client(url).list()
            shown = await client(url).show("pirate")
            pulled = await client(url).pull("persona")  # HA pulls a name it does not find listed
            streamed = [p.status async for p in await client(url).pull("robot:latest", stream=True)]
            with pytest.raises(ollama.ResponseError) as unknown:
                await client(url).pull("llama3.2")
            with pytest.raises(ollama.ResponseError) as other_tag:
                await client(url).show("pirate:7b")
    names = [model.model for model in listed.models]
    assert names == ["persona:latest", *(f"{p}:latest" for p in manager.personas if p != "persona")]
    assert all(model.digest and model.details.family == "persona" for model in listed.models)
    assert "tools" in shown.capabilities and shown.details.format == "gguf"
    assert pulled.status == "success" and streamed[-1] == "success"
    assert (unknown.value.status_code, unknown.value.error) == (404, "model 'llama3.2' not found")
    assert other_tag.value.status_code == 404


async def test_root_version_and_ps_answer_like_ollama(manager):
    async with ollama_api(manager, ScriptedBackend()) as url, aiohttp.ClientSession() as http:
        async with asyncio.timeout(WAIT):
            async with http.get(url) as root:
                root_text = await root.text()
            async with http.head(url + "/") as head:
                head_status = head.status
            async with http.get(url + "/api/version") as version:
                version_body = await version.json()
            ps = await client(url).ps()
    assert root_text == "Ollama is running" and head_status == 200
    assert version_body["version"].count(".") == 2
    assert next(m.model for m in ps.models) == "persona:latest"


# -- chat -----------------------------------------------------------------------------------------
async def test_a_streamed_reply_comes_in_speakable_chunks_with_the_persona_leading(manager):
    manager.set_active("pirate")
    backend = ScriptedBackend(
        [
            [
                Delta("Ahoy, matey! "),
                Delta("The kitchen light be on now. "),
                Delta("I lit it myself at dawn. "),
                Delta("Shall I light the others too?"),
            ]
        ]
    )
    history = [
        {"role": "system", "content": HA_SYSTEM},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Ahoy!"},
        {"role": "user", "content": "Is the kitchen light on?"},
    ]
    async with ollama_api(manager, backend) as url:
        parts = await chat_stream(url, model="persona", messages=history, tools=[TURN_ON])

    assert [part.done for part in parts] == [False] * (len(parts) - 1) + [True]
    assert len(parts) >= 3  # the reply arrives piece by piece, not at the end
    assert parts[-1].done_reason == "stop" and parts[-1].message.content == ""
    assert all(part.model == "persona" and part.message.role == "assistant" for part in parts)
    # two sentences at most (a greeting does not count)
    assert content(parts) == "Ahoy, matey! The kitchen light be on now. I lit it myself at dawn."
    [request] = backend.requests
    system = request.messages[0]["content"]
    pirate = manager.get("pirate")
    assert system.startswith(build_system_prompt(pirate) + "\n\n" + HEADING)
    assert "Static Context" in system and "- names: Kitchen Light" in system and "HassTurnOn" in system
    assert not any(line in system for line in GENERIC_LINES)
    # after HA's long context the persona is said once more (its examples as text, not as turns:
    # with tools offered a model copies word-only turns and stops calling)
    again = request.messages[1]
    assert again["role"] == "system" and again["content"].startswith("That is all about the home. You are")
    assert "Captain Barnacle" in again["content"] and 'Asked "' in again["content"]
    assert list(request.messages[2:]) == history[1:]
    assert request.tools == (TURN_ON,)
    assert request.model == pirate.llm.model and request.temperature == pirate.llm.temperature


async def test_a_reply_without_streaming_is_one_object(manager):
    backend = ScriptedBackend()
    async with ollama_api(manager, backend) as url:
        async with asyncio.timeout(WAIT):
            reply = await client(url).chat(
                model="robot:latest", messages=[{"role": "user", "content": "Hi"}], stream=False
            )
    assert reply.done and reply.done_reason == "stop" and reply.model == "robot:latest"
    assert reply.message.content == "Ahoy matey! The sea is calm today."
    assert reply.total_duration > 0
    [request] = backend.requests
    preamble = persona_messages(manager.get("robot"))  # no tools: the example turns lead the chat
    assert list(request.messages) == [*preamble, {"role": "user", "content": "Hi"}]


async def test_model_persona_follows_the_active_persona_and_an_id_pins_one(manager):
    backend = ScriptedBackend()
    ask = [{"role": "user", "content": "Hi"}]
    async with ollama_api(manager, backend) as url:
        manager.set_active("butler")
        await chat_stream(url, model="persona:latest", messages=ask)
        manager.set_active("coach")
        await chat_stream(url, model="persona", messages=ask)
        await chat_stream(url, model="Robot", messages=ask)
    prompts = [request.messages[0]["content"] for request in backend.requests]
    assert prompts == [build_system_prompt(manager.get(p)) for p in ("butler", "coach", "robot")]


async def test_a_voice_command_switches_the_persona_and_greets(manager):
    backend = ScriptedBackend()
    async with ollama_api(manager, backend) as url:
        parts = await chat_stream(
            url,
            model="persona",
            messages=[
                {"role": "system", "content": HA_SYSTEM},
                {"role": "user", "content": "Switch to the pirate"},
            ],
        )
    assert content(parts) == manager.get("pirate").greeting and parts[-1].done
    assert manager.active().id == "pirate"
    assert backend.requests == []  # no LLM for a command


async def test_tool_calls_round_trip_through_the_official_client(manager):
    call = ToolCall("HassTurnOn", {"name": "Kitchen Light", "domain": ["light"]})
    backend = ScriptedBackend(
        [[Delta(tool_calls=(call,))], [Delta("Done, the kitchen light is on."), Delta(finish_reason="stop")]]
    )
    messages: list = [
        {"role": "system", "content": HA_SYSTEM},
        {"role": "user", "content": "Turn on the kitchen light"},
    ]
    async with ollama_api(manager, backend) as url:
        first = await chat_stream(url, model="persona", messages=messages, tools=[TURN_ON])
        calls = [c for part in first for c in part.message.tool_calls or ()]
        # What HA does next: run the intent, then send the call and its result back.
        messages += [
            ollama.Message(role="assistant", tool_calls=calls),
            {"role": "tool", "content": json.dumps({"speech": {}, "response_type": "action_done"})},
        ]
        second = await chat_stream(url, model="persona", messages=messages, tools=[TURN_ON])

    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [
        ("HassTurnOn", {"name": "Kitchen Light", "domain": ["light"]})
    ]
    assert content(first) == "" and first[-1].done
    assert content(second) == "Done, the kitchen light is on."
    sent = backend.requests[1].messages
    assert sent[-2] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"function": {"name": "HassTurnOn", "arguments": call.arguments}}],
    }
    assert sent[-1]["role"] == "tool" and "action_done" in sent[-1]["content"]


def bare_tool(name: str) -> dict:
    parameters = {"type": "object", "properties": {}}
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


async def test_a_question_about_the_homes_state_or_the_time_looks_before_it_answers(manager):
    """Asked "Is the kitchen light on?", the model once said "The kitchen light is on." without
    looking: the service calls HA's read-only tool itself, and the model answers from its result."""
    backend = ScriptedBackend([[Delta("Aye, the kitchen light be off."), Delta(finish_reason="stop")]])
    tools = [TURN_ON, bare_tool("GetLiveContext"), bare_tool("GetDateTime")]
    asked = {}
    async with ollama_api(manager, backend) as url:
        for question in ("Is the kitchen light on?", "What time is it?", "Turn on the kitchen light"):
            messages = [{"role": "system", "content": HA_SYSTEM}, {"role": "user", "content": question}]
            parts = await chat_stream(url, model="persona", messages=messages, tools=tools)
            asked[question] = [c.function.name for part in parts for c in part.message.tool_calls or ()]
        looked = {"function": {"name": "GetLiveContext", "arguments": {}}}
        messages = [  # HA ran the state tool: its result comes back
            {"role": "system", "content": HA_SYSTEM},
            {"role": "user", "content": "Is the kitchen light on?"},
            ollama.Message(role="assistant", tool_calls=[looked]),
            {"role": "tool", "content": "- names: Kitchen Light\n  state: 'off'"},
        ]
        answer = content(await chat_stream(url, model="persona", messages=messages, tools=tools))
    assert asked == {
        "Is the kitchen light on?": ["GetLiveContext"],
        "What time is it?": ["GetDateTime"],
        "Turn on the kitchen light": [],  # the command goes to the model (the script has words only)
    }
    assert len(backend.requests) == 2  # only the command and the answer from the result asked the model
    assert answer == "Aye, the kitchen light be off."
    assert backend.requests[1].messages[-1]["role"] == "tool"


async def test_the_time_from_get_date_time_reaches_the_model_as_a_voice_says_it(manager):
    """Through HA 2026.2.3, qwen-1.5b read GetDateTime's "time": "03:07:12" as "3:07 PM": the model
    gets "3:07 AM"; the rest of HA's result, and any other tool's, is as HA wrote it."""
    backend = ScriptedBackend([[Delta("Arr, it be 3:07 AM, matey."), Delta(finish_reason="stop")]])
    result = {"date": "2026-12-08", "time": "03:07:12", "timezone": "UTC", "weekday": "Tuesday"}
    messages = [
        {"role": "system", "content": HA_SYSTEM},
        {"role": "user", "content": "What time is it?"},
        ollama.Message(role="assistant", tool_calls=[{"function": {"name": "GetDateTime", "arguments": {}}}]),
        {"role": "tool", "content": json.dumps({"success": True, "result": result})},
    ]
    tools = [TURN_ON, bare_tool("GetLiveContext"), bare_tool("GetDateTime")]
    async with ollama_api(manager, backend) as url:
        answer = content(await chat_stream(url, model="persona", messages=messages, tools=tools))
        messages[-2] = ollama.Message(
            role="assistant", tool_calls=[{"function": {"name": "GetLiveContext", "arguments": {}}}]
        )
        await chat_stream(url, model="persona", messages=messages, tools=tools)
    told, other = (json.loads(request.messages[-1]["content"]) for request in backend.requests)
    assert told == {"success": True, "result": {**result, "time": "3:07 AM"}}
    assert other["result"]["time"] == "03:07:12"
    assert answer == "Arr, it be 3:07 AM, matey."


async def test_a_remark_gets_no_tools_and_a_question_never_acts(manager):
    """ "My neighbour's garage door is open again" is talked about, without HA's tools; a question's
    action call is dropped (the model may only look); a request's call goes to HA."""
    close = ToolCall("HassTurnOff", {"name": "Garage Door"})
    backend = ScriptedBackend([[Delta(tool_calls=(close,))]])
    calls = {}
    async with ollama_api(manager, backend) as url:
        for said in (
            "My neighbour's garage door is open again.",
            "What do you know about the garage door?",
            "Close the garage door.",
        ):
            messages = [{"role": "system", "content": HA_SYSTEM}, {"role": "user", "content": said}]
            tools = [TURN_ON, bare_tool("HassTurnOff")]
            parts = await chat_stream(url, model="persona", messages=messages, tools=tools)
            calls[said] = [c.function.name for part in parts for c in part.message.tool_calls or ()]
    remark, question, request = backend.requests
    assert calls == {
        "My neighbour's garage door is open again.": [],
        "What do you know about the garage door?": [],
        "Close the garage door.": ["HassTurnOff"],
    }
    assert remark.tools == () and "Garage Door" not in remark.messages[0]["content"]
    assert question.tools and request.tools


async def test_a_backend_that_is_down_answers_with_the_personas_fallback_line(manager):
    manager.set_active("robot")
    async with ollama_api(manager, ScriptedBackend(mode="down")) as url:
        parts = await chat_stream(url, model="persona", messages=[{"role": "user", "content": "Hi"}])
    assert content(parts).rstrip(".") in manager.get("robot").spec.fallbacks.backend_down
    assert parts[-1].done


async def test_empty_messages_load_the_model(manager):
    backend = ScriptedBackend()
    async with ollama_api(manager, backend) as url:
        async with asyncio.timeout(WAIT):
            reply = await client(url).chat(model="persona", messages=[], stream=False)
    assert reply.done and reply.done_reason == "load" and backend.requests == []


# -- bad requests ---------------------------------------------------------------------------------
BAD_CHATS: list[tuple[str, bytes | dict | list, str]] = [
    ("not json", b"{model: persona", "not valid JSON"),
    ("not an object", [1, 2], "must be a JSON object"),
    ("no model", {"messages": []}, "model is required"),
    ("model not a string", {"model": 7}, "model must be a non-empty string"),
    ("messages not a list", {"model": "persona", "messages": "hi"}, "messages must be a list"),
    ("bad role", {"model": "persona", "messages": [{"role": "bot", "content": "x"}]}, "messages[0].role"),
    ("content not text", {"model": "persona", "messages": [{"role": "user", "content": 5}]}, "content"),
    ("stream not bool", {"model": "persona", "messages": [], "stream": "yes"}, "stream must be"),
    ("bad tool", {"model": "persona", "messages": [], "tools": [{"type": "function"}]}, "tools[0]"),
    (
        "bad arguments",
        {
            "model": "persona",
            "messages": [
                {"role": "assistant", "tool_calls": [{"function": {"name": "X", "arguments": "{oops"}}]}
            ],
        },
        "arguments is not valid JSON",
    ),
]


@pytest.mark.parametrize(("case", "body", "message"), BAD_CHATS, ids=[case for case, _, _ in BAD_CHATS])
async def test_a_malformed_chat_is_a_400_and_the_server_keeps_serving(manager, case, body, message):
    backend = ScriptedBackend()
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with ollama_api(manager, backend) as url, aiohttp.ClientSession() as http:
        async with asyncio.timeout(WAIT):
            async with http.post(url + "/api/chat", data=data) as response:
                status, answer = response.status, await response.json()
            async with http.get(url + "/api/tags") as after:
                assert after.status == 200
    assert status == 400 and message in answer["error"], answer
    assert backend.requests == []


async def test_unknown_models_paths_and_methods_are_json_errors(manager):
    async with ollama_api(manager, ScriptedBackend()) as url, aiohttp.ClientSession() as http:
        async with asyncio.timeout(WAIT):
            async with http.post(url + "/api/chat", json={"model": "nope", "messages": []}) as response:
                unknown = (response.status, await response.json())
            async with http.get(url + "/api/generate") as response:
                no_path = (response.status, await response.json())
            async with http.get(url + "/api/chat") as response:
                wrong_method = (response.status, await response.json())
    assert unknown == (404, {"error": "model 'nope' not found"})
    assert no_path[0] == 404 and "no endpoint /api/generate" in no_path[1]["error"]
    assert wrong_method[0] == 405 and "GET is not allowed" in wrong_method[1]["error"]


# -- hang-ups -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["hang", "endless"])
async def test_a_client_that_hangs_up_mid_reply_stops_the_generation(manager, mode):
    """`hang`: the model goes quiet after its first words (still reading, or slow), so nothing is
    written that could fail: only handler cancellation notices the hang-up. `endless`: writes fail."""
    backend = ScriptedBackend([[Delta("Ahoy there, matey! "), Delta("Listen well.")]], mode=mode)
    settings = ChatSettings(timeout=600, reply_timeout=600)  # the hang-up, not a timeout, must end it
    body = {
        "model": "persona",
        "messages": [{"role": "user", "content": "Tell me a story"}],
        "tools": [TURN_ON],
    }
    async with ollama_api(manager, backend, settings) as url:
        async with asyncio.timeout(WAIT):
            async with aiohttp.ClientSession() as http, http.post(url + "/api/chat", json=body) as response:
                first = json.loads(await response.content.readline())
            # the session is closed: the connection is gone
            await backend.closed.wait()
            backend.mode = "ok"
            replies = await chat_stream(url, model="persona", messages=[{"role": "user", "content": "Hi"}])
    assert first["done"] is False and first["message"]["content"]
    assert replies[-1].done


# -- HA's system message ----------------------------------------------------------------------------
def test_device_context_drops_only_has_generic_persona_lines():
    kept = device_context([HA_SYSTEM])
    assert kept.startswith(HEADING + "\nWhen controlling Home Assistant always call the intent tools.")
    assert not any(line in kept for line in GENERIC_LINES)
    assert kept.endswith("- names: Garage Door\n  domain: cover\n  areas: Garage")
    assert device_context(["\n".join(GENERIC_LINES)]) == ""
    assert device_context(["Current time is 10:00:00. Today's date is 2026-02-03."]).endswith("2026-02-03.")


# -- a real model -----------------------------------------------------------------------------------
@pytest.mark.model
async def test_smollm2_answers_through_the_official_client(smollm2, manager):
    manager.set_active("assistant")
    async with ollama_api(manager, smollm2, ChatSettings(timeout=120, reply_timeout=300)) as url:
        parts = await chat_stream(
            url,
            model="persona",
            messages=[
                {"role": "system", "content": HA_SYSTEM},
                {"role": "user", "content": "What is the capital of France?"},
            ],
        )
    assert parts[-1].done and len(parts) >= 2
    assert content(parts).strip()
    assert all(not part.message.tool_calls for part in parts)


async def test_a_call_repeated_after_its_result_is_dropped_and_the_turn_ends_in_words(manager):
    """A small model answers a tool result by making the same call again; HA would run it again,
    up to ten rounds."""
    call = ToolCall("HassTurnOff", {"name": "Garage Door"})
    backend = ScriptedBackend([[Delta(tool_calls=(call,))]])
    messages = [
        {"role": "user", "content": "Close the garage door"},
        {"role": "assistant", "content": "", "tool_calls": [call.as_dict()]},
        {"role": "tool", "content": '{"response_type": "action_done"}'},
    ]
    async with ollama_api(manager, backend) as url:
        parts = await chat_stream(url, model="persona", messages=messages, tools=[TURN_ON])
    assert not any(part.message.tool_calls for part in parts)
    assert content(parts) == "Done." and parts[-1].done


async def test_tools_cap_the_sampling_temperature(manager, personas_dir):
    pirate_file = personas_dir / "pirate.yaml"
    pirate_file.write_text(pirate_file.read_text().replace("temperature: 0.0", "temperature: 0.7"))
    assert manager.reload().changed
    manager.set_active("pirate")
    backend = ScriptedBackend()
    system = {"role": "system", "content": HA_SYSTEM}
    ask = [system, {"role": "user", "content": "Switch on the kitchen light"}]
    chat = [system, {"role": "user", "content": "Why is the sea salty?"}]  # names nothing of the home
    async with ollama_api(manager, backend) as url:
        await chat_stream(url, model="persona", messages=ask, tools=[TURN_ON])
        await chat_stream(url, model="persona", messages=ask)
        result = [*ask, {"role": "tool", "content": "{}"}]  # the reply to a tool's result is speech
        await chat_stream(url, model="persona", messages=result, tools=[TURN_ON])
        await chat_stream(url, model="persona", messages=chat, tools=[TURN_ON])  # in character
    assert [request.temperature for request in backend.requests] == [0.2, 0.7, 0.7, 0.7]


def test_a_question_about_the_home_is_told_from_chat_by_hass_own_context():
    from wyoming_persona.agent.ha_context import closing, mentions_home

    context = device_context([HA_SYSTEM])
    for question in ("Turn on the kitchen light", "Is the garage door open?", "What time is it?"):
        assert mentions_home(question, context), question
    for question in ("Why is the sea salty?", "Who wrote Hamlet?", "Tell me a joke about knots"):
        assert not mentions_home(question, context), question
    assert closing("You are Ada.", ("You speak softly.",), [("Hi?", "Hello, dear.")]) == (
        'That is all about the home. You are Ada. You speak softly. For example: Asked "Hi?", you say '
        '"Hello, dear.".'
    )
