"""How well an embedded model calls Home Assistant's tools through the Ollama-compatible API.

    .venv/bin/python bench/tool_calls.py [--model qwen-1.5b] [--personas assistant,pirate] [--no-follow-up]

The persona service's Ollama-compatible API runs in-process on a free port with the embedded model
(`--model`, 2 threads) and a private copy of config/personas. For each persona, each home command is
sent the way HA 2026.2's Ollama integration sends it, through the official `ollama` client: HA's
system message for the harness home (HA's default instructions, the Assist API rules, the YAML list
of exposed entities with areas), the ten tools HA offered there (schemas written after HA's intent
slot schemas), `stream: true`, `keep_alive: "-1s"`, `num_ctx: 8192`.

A reply counts as right when its first tool call has the expected name and its arguments name the
expected target (entity name, or area, case-insensitive) plus the expected value; the question about
the world must get words and no call. With `--follow-up` (default) each right call is answered like
HA does (the assistant's call, then a `tool` message with an intent response) and the second reply's
words are recorded. Times: request sent -> the tool call line (or the first words). Results go to
bench/results/tool_calls.json; a markdown table is printed.
"""

# ruff: noqa: E501 (HA's prompt text is copied verbatim, long lines included)
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ollama

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from wyoming_persona.agent.backends import EmbeddedSettings  # noqa: E402
from wyoming_persona.agent.backends.embedded import LlamaCppChatBackend  # noqa: E402
from wyoming_persona.agent.chat import ChatSettings, PersonaChat  # noqa: E402
from wyoming_persona.agent.history import ConversationStore  # noqa: E402
from wyoming_persona.agent.ollama_api import bound_port, start  # noqa: E402
from wyoming_persona.personas import PersonaManager  # noqa: E402

RESULTS = REPO / "bench" / "results" / "tool_calls.json"

HA_INSTRUCTIONS = """You are a voice assistant for Home Assistant.
Answer questions about the world truthfully.
Answer in plain text. Keep it simple and to the point.
"""
DYNAMIC_CONTEXT = """You ARE equipped to answer questions about the current state of
the home using the `GetLiveContext` tool. This is a primary function. Do not state you lack the
functionality if the question requires live data.
If the user asks about device existence/type (e.g., "Do I have lights in the bedroom?"): Answer
from the static context below.
If the user asks about the CURRENT state, value, or mode (e.g., "Is the lock locked?",
"Is the fan on?", "What mode is the thermostat in?", "What is the temperature outside?"):
    1.  Recognize this requires live data.
    2.  You MUST call `GetLiveContext`. This tool will provide the needed real-time information (like temperature from the local weather, lock status, etc.).
    3.  Use the tool's response** to answer the user accurately (e.g., "The temperature outside is [value from tool].").
For general knowledge questions not about the home: Answer truthfully from internal knowledge.
"""
ENTITIES = [
    ("Kitchen Light", "light", "Kitchen"),
    ("Coffee Machine", "switch", "Kitchen"),
    ("Living Room Lamp", "light", "Living Room"),
    ("Thermostat", "climate", "Living Room"),
    ("Living Room Temperature", "sensor", "Living Room"),
    ("Bedroom Light", "light", "Bedroom"),
    ("Garage Door", "cover", "Garage"),
]


def ha_system_prompt() -> str:
    """HA's system message (chat_log.py: instructions, then the Assist API prompt), no device id."""
    api = [
        "When controlling Home Assistant always call the intent tools. "
        "Use HassTurnOn to lock and HassTurnOff to unlock a lock. "
        "When controlling a device, prefer passing just name and domain. "
        "When controlling an area, prefer passing just area name and domain.",
        "When a user asks to turn on all devices of a specific type, "
        "ask user to specify an area, unless there is only one device of that type.",
        "This device is not able to start timers.",
        DYNAMIC_CONTEXT,
        "Static Context: An overview of the areas and the devices in this smart home:",
        "".join(f"- names: {n}\n  domain: {d}\n  areas: {a}\n" for n, d, a in ENTITIES),
    ]
    return HA_INSTRUCTIONS + "\n" + "\n".join(api)


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str] = ()) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": list(required)},
        },
    }


_TARGET = {
    "name": {"type": "string"},
    "area": {"type": "string"},
    "floor": {"type": "string"},
    "domain": {"type": "array", "items": {"type": "string"}},
    "device_class": {"type": "array", "items": {"type": "string"}},
}
HA_TOOLS = [
    _tool(
        "HassTurnOn",
        "Turns on/opens/presses a device or entity. For locks, this performs a 'lock' action. "
        "Use for requests like 'turn on', 'activate', 'enable', or 'lock'.",
        _TARGET,
    ),
    _tool(
        "HassTurnOff",
        "Turns off/closes a device or entity. For locks, this performs an 'unlock' action. "
        "Use for requests like 'turn off', 'deactivate', 'disable', or 'unlock'.",
        _TARGET,
    ),
    _tool(
        "HassSetPosition",
        "Sets the position of a device or entity",
        {**_TARGET, "position": {"type": "integer", "minimum": 0, "maximum": 100}},
        ["position"],
    ),
    _tool("HassStopMoving", "Stops a moving device or entity", _TARGET),
    _tool("HassCancelAllTimers", "Cancels all timers", {"area": {"type": "string"}}),
    _tool(
        "HassLightSet",
        "Sets the brightness percentage or color of a light",
        {
            **_TARGET,
            "color": {"type": "string"},
            "temperature": {"type": "integer"},
            "brightness": {
                "type": "integer",
                "minimum": 0,
                "maximum": 100,
                "description": "The brightness percentage of the light between 0 and 100, "
                "where 0 is off and 100 is fully lit",
            },
        },
    ),
    _tool(
        "HassClimateSetTemperature",
        "Set desired temperature",
        {"temperature": {"type": "number"}, "area": {"type": "string"}, "name": {"type": "string"}},
        ["temperature"],
    ),
    _tool(
        "HassBroadcast",
        "Broadcast a message through the home",
        {"message": {"type": "string"}},
        ["message"],
    ),
    _tool("GetDateTime", "Provides the current date and time.", {}),
    _tool(
        "GetLiveContext",
        "Provides real-time information about the CURRENT state, value, or mode of devices, sensors, "
        "entities, or areas. Use this tool for: 1. Answering questions about current conditions "
        "(e.g., 'Is the light on?'). 2. As the first step in conditional actions (e.g., 'If the weather "
        "is rainy, turn off sprinklers' requires checking the weather first).",
        {},
    ),
]


@dataclass(frozen=True)
class Case:
    text: str
    tools: tuple[str, ...]
    """Accepted tool names; empty: words and no call."""
    targets: tuple[str, ...] = ()
    """Any of these in the arguments' name/area (lowercased)."""
    value: tuple[str, Any] | None = None
    """An argument that must have this value (numbers compared as numbers)."""


CASES = [
    Case("Turn on the kitchen light", ("HassTurnOn",), ("kitchen light", "kitchen")),
    Case("Turn off the living room lamp", ("HassTurnOff",), ("living room lamp", "living room")),
    Case("Switch on the coffee machine", ("HassTurnOn",), ("coffee machine",)),
    Case("Open the garage door", ("HassTurnOn", "HassSetPosition"), ("garage door", "garage")),
    Case("Close the garage door", ("HassTurnOff", "HassSetPosition"), ("garage door", "garage")),
    Case("Set the thermostat to 21 degrees", ("HassClimateSetTemperature",), (), ("temperature", 21)),
    Case(
        "Dim the bedroom light to 30 percent",
        ("HassLightSet",),
        ("bedroom light", "bedroom"),
        ("brightness", 30),
    ),
    Case("Turn off the lights in the bedroom", ("HassTurnOff",), ("bedroom", "bedroom light")),
    Case("Is the kitchen light on?", ("GetLiveContext",)),
    Case("What time is it?", ("GetDateTime",)),
    Case("What is the capital of France?", ()),
]
RESULTS_BY_TOOL = {
    "GetDateTime": {"success": True, "result": {"date": "2026-02-03", "time": "10:15:00", "timezone": "CET"}},
    "GetLiveContext": {
        "success": True,
        "result": "Live Context: An overview of the areas and the devices in this smart home:\n"
        "- names: Kitchen Light\n  domain: light\n  state: 'on'\n  areas: Kitchen\n",
    },
}
ACTION_DONE = {
    "speech": {},
    "response_type": "action_done",
    "speech_slots": {},
    "data": {"targets": [], "success": [{"name": "{target}", "type": "entity", "id": "x.y"}], "failed": []},
}


@dataclass
class Outcome:
    persona: str
    text: str
    right: bool
    calls: list[dict]
    words: str
    seconds: float
    follow_up: str = ""
    follow_up_seconds: float = 0.0
    why: str = ""


@dataclass
class Summary:
    persona: str
    right: int
    total: int
    calls_right: int
    calls_total: int
    median_seconds: float
    leaked_tags: int
    outcomes: list[Outcome] = field(default_factory=list)


def grade(case: Case, calls: list[dict], words: str) -> tuple[bool, str]:
    if not case.tools:
        return (not calls and bool(words.strip()), "called a tool" if calls else "")
    if not calls:
        return False, "no tool call"
    first = calls[0]["function"]
    arguments = {k: v for k, v in first["arguments"].items()}
    if first["name"] not in case.tools:
        return False, f"called {first['name']}"
    if case.targets:
        named = " ".join(str(arguments.get(k, "")).lower() for k in ("name", "area"))
        if not any(
            target == named.strip() or target in named.split(" ") or target in named
            for target in case.targets
        ):
            return False, f"target {arguments}"
    if case.value is not None:
        key, wanted = case.value
        try:
            if float(arguments.get(key)) != float(wanted):
                return False, f"{key}={arguments.get(key)!r}"
        except (TypeError, ValueError):
            return False, f"{key}={arguments.get(key)!r}"
    return True, ""


async def ask(client: ollama.AsyncClient, messages: list) -> tuple[list[dict], str, float]:
    started = time.perf_counter()
    first: float | None = None
    calls: list[dict] = []
    words = ""
    parts = await client.chat(
        model="persona",
        messages=messages,
        tools=HA_TOOLS,
        stream=True,
        keep_alive="-1s",
        options={"num_ctx": 8192},
    )
    async for part in parts:
        found = [
            {"function": {"name": c.function.name, "arguments": dict(c.function.arguments)}}
            for c in part.message.tool_calls or ()
        ]
        if (found or part.message.content) and first is None:
            first = time.perf_counter() - started
        calls += found
        words += part.message.content or ""
    return calls, words, first if first is not None else time.perf_counter() - started


async def run(args: argparse.Namespace) -> list[Summary]:
    folder = Path(tempfile.mkdtemp(prefix="tool-bench-"))
    shutil.copytree(REPO / "config" / "personas", folder / "personas")
    manager = PersonaManager(folder / "personas", folder / "state", refresh_interval=0.0)
    settings = EmbeddedSettings(model=args.model, seed=0, n_threads=2, n_ctx=8192, prompt_cache_mib=0)
    backend = await asyncio.to_thread(LlamaCppChatBackend.load, settings)
    chat = PersonaChat(manager, backend, ConversationStore(), ChatSettings(timeout=300, reply_timeout=600))
    runner = await start(chat, "127.0.0.1", 0)
    client = ollama.AsyncClient(host=f"http://127.0.0.1:{bound_port(runner)}", timeout=900)
    system = {"role": "system", "content": ha_system_prompt()}
    summaries = []
    try:
        for persona in args.personas:
            manager.set_active(persona)
            outcomes = []
            for case in CASES:
                messages: list = [system, {"role": "user", "content": case.text}]
                calls, words, seconds = await ask(client, messages)
                right, why = grade(case, calls, words)
                outcome = Outcome(persona, case.text, right, calls, words, round(seconds, 2), why=why)
                if right and calls and args.follow_up:
                    target = calls[0]["function"]["arguments"].get("name") or case.text
                    name = calls[0]["function"]["name"]
                    result = json.dumps(RESULTS_BY_TOOL.get(name, ACTION_DONE)).replace(
                        "{target}", str(target)
                    )
                    messages += [
                        {"role": "assistant", "tool_calls": calls[:1]},
                        {"role": "tool", "content": result},
                    ]
                    more, outcome.follow_up, outcome.follow_up_seconds = await ask(client, messages)
                    outcome.follow_up_seconds = round(outcome.follow_up_seconds, 2)
                    if more:
                        outcome.follow_up += f" [called again: {more}]"
                print(
                    f"{persona:10} {'ok ' if right else 'BAD'} {seconds:5.1f}s {case.text!r}: {calls} {words!r} {why}",
                    flush=True,
                )
                if outcome.follow_up:
                    print(f"{'':14} then {outcome.follow_up_seconds:5.1f}s {outcome.follow_up!r}", flush=True)
                outcomes.append(outcome)
            with_calls = [o for o, c in zip(outcomes, CASES, strict=True) if c.tools]
            summaries.append(
                Summary(
                    persona,
                    sum(o.right for o in outcomes),
                    len(outcomes),
                    sum(o.right for o in with_calls),
                    len(with_calls),
                    round(statistics.median(o.seconds for o in outcomes), 2),
                    sum("tool_call" in (o.words + o.follow_up) for o in outcomes),
                    outcomes,
                )
            )
    finally:
        await client.close()
        await runner.cleanup()
        await backend.close()
        shutil.rmtree(folder, ignore_errors=True)
    return summaries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen-1.5b")
    parser.add_argument("--personas", type=lambda v: v.split(","), default=["assistant", "pirate"])
    parser.add_argument("--follow-up", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    summaries = asyncio.run(run(args))
    print("\n| model | persona | right | tool calls right | median s to call/words | `<tool_call>` spoken |")
    print("|---|---|---|---|---|---|")
    for s in summaries:
        print(
            f"| {args.model} | {s.persona} | {s.right}/{s.total} | {s.calls_right}/{s.calls_total} | {s.median_seconds} | {s.leaked_tags} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"model": args.model, "summaries": [asdict(s) for s in summaries]}, indent=2)
    )


if __name__ == "__main__":
    main()
