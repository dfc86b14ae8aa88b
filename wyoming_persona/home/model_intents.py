"""The LLM as the last resort for home commands that HA's templates and the loose grammar miss.

People say "can I get some light in the kitchen" or "it's freezing, make it warmer": no fixed grammar
covers that. Only an utterance that mentions something of the home (a device's own word, an area, a
kind: "lamp", "heating") and is not a knowledge question ("how does a thermostat work") is shown to
the model, with the home's devices and a few functions; its call is resolved against the home like
the grammar's words are. A plain answer means chat, and the stream stops at its first word, so a
chat question that mentions a device costs only the reading of the question.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from typing import Any

from ..agent.backends.base import BackendError, ChatBackend, ChatRequest, ToolCall
from .intents import RecognizedIntent, Source
from .loose import KIND_WORDS, Thing, resolve, stepped_brightness, stepped_temperature
from .model import HomeSnapshot, normalize_name
from .request import Form, utterance_form

_LOGGER = logging.getLogger(__name__)

MAX_TOKENS = 80
_KNOWLEDGE = re.compile(
    r"^(?:how (?:do|does|did|can|could|should|would|much|many|long|often)|why|who|when|where|"
    r"what (?:is|are|was|were|does|do) (?:a|an)|what's (?:a|an)|what does|what do|tell me (?:a|an|about)|"
    r"explain|should i|is it (?:bad|good|safe|true|better)|can you (?:explain|tell me (?:a|about))|"
    r"do you|are you|what's your|what is your|i (?:love|like|hate|think|feel|wonder))\b"
)
_ACTION_CUES = frozenset(
    {
        "on",
        "off",
        "open",
        "close",
        "shut",
        "up",
        "down",
        "dim",
        "dimmer",
        "darker",
        "brighter",
        "brighten",
        "bright",
        "brightness",
        "lighter",
        "max",
        "maximum",
        "minimum",
        "full",
        "half",
        "percent",
        "degrees",
        "warmer",
        "cooler",
        "colder",
        "hotter",
        "warm",
        "cool",
        "set",
        "turn",
        "switch",
        "start",
        "stop",
        "raise",
        "lower",
        "kill",
    }
)
"""An action needs one of these words: "my kitchen is a mess" must never switch the kitchen light."""


def _device(description: str) -> dict:
    return {"type": "string", "description": description}


def _tool(name: str, description: str, properties: dict, required: list[str]) -> dict:
    parameters = {"type": "object", "properties": properties, "required": required}
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


DEVICE = _device("the device as the user named it, or an area like 'kitchen lights'")
TOOLS: tuple[dict, ...] = (
    _tool("turn_on", "Switch a device on, or open a door or cover", {"device": DEVICE}, ["device"]),
    _tool("turn_off", "Switch a device off, or close a door or cover", {"device": DEVICE}, ["device"]),
    _tool(
        "set_level",
        "Set a light's brightness or a cover's opening, in percent",
        {"device": DEVICE, "percent": {"type": "number"}},
        ["device", "percent"],
    ),
    _tool(
        "set_temperature", "Set the heating to a temperature", {"degrees": {"type": "number"}}, ["degrees"]
    ),
    _tool(
        "change",
        "Make a light brighter or dimmer, or the heating warmer or cooler, by a step",
        {"device": DEVICE, "direction": {"type": "string", "enum": ["up", "down"]}},
        ["device", "direction"],
    ),
    _tool(
        "get_state",
        "Tell how a device is now: on or off, open, its temperature",
        {"device": DEVICE},
        ["device"],
    ),
)


class ModelIntents:
    """Asks the chat backend for a function call on utterances that may be home commands."""

    def __init__(self, backend: ChatBackend, timeout: float = 20.0) -> None:
        self.backend = backend
        self.timeout = timeout
        self._home_words: tuple[int, set[str]] = (-1, set())
        """(home version, its words): built once per registry version, not per turn."""
        self._failing: str | None = None
        """Why the last call failed (None: it answered): a warning once per failure episode."""

    def worth_asking(self, text: str, home: HomeSnapshot) -> bool:
        """Only a request or a question that names something of the home and is not a knowledge
        question goes to the model: a remark, a negation or a hypothetical never does."""
        words = normalize_name(text)
        if _KNOWLEDGE.match(_without_lead(words)) or utterance_form(text).form is Form.OTHER:
            return False
        if self._home_words[0] != home.version:
            self._home_words = (home.version, home_words(home))
        return bool(set(words.split()) & self._home_words[1])

    def request(self, text: str, home: HomeSnapshot) -> ChatRequest:
        """The same system message for every question about this home: the backend caches it."""
        return ChatRequest(
            messages=({"role": "system", "content": system_prompt(home)}, {"role": "user", "content": text}),
            tools=TOOLS,
            temperature=0.0,
            max_tokens=MAX_TOKENS,
        )

    async def warm(self, home: HomeSnapshot) -> None:
        """Read the home's system message ahead of the first question (the embedded backend keeps it)."""
        warm = getattr(self.backend, "warm", None)
        if warm is not None:
            await warm([self.request("?", home)])

    async def recognize(self, text: str, home: HomeSnapshot) -> RecognizedIntent | None:
        call = await self._first_call(text, home)
        if call is None:
            return None
        found = intent_of(call, home)
        _LOGGER.debug("Model home call %s%s -> %s", call.name, dict(call.arguments), found)
        if found is None or not plausible(found, text):
            return None
        return RecognizedIntent(found.name, found.slots, text, source=Source.MODEL, exact=False)

    async def _first_call(self, text: str, home: HomeSnapshot) -> ToolCall | None:
        stream = self.backend.stream(self.request(text, home))
        call: ToolCall | None = None
        try:
            async with asyncio.timeout(self.timeout):
                async for delta in stream:
                    if delta.tool_calls:
                        call = delta.tool_calls[0]
                        break
                    if delta.text.strip():
                        break  # it answers in words: chat, and the persona will answer instead
        except (BackendError, TimeoutError) as err:
            reason = (str(err) or type(err).__name__) if isinstance(err, BackendError) else "timed out"
            if self._failing is None:
                _LOGGER.warning(
                    "Home commands: %s failed (%s); what the templates miss goes to chat until it answers",
                    self.backend.name,
                    reason,
                )
            else:
                _LOGGER.debug("Home commands: %s still failing (%s)", self.backend.name, reason)
            self._failing = reason
            return None
        finally:
            await stream.aclose()
        if self._failing is not None:
            _LOGGER.info("Home commands: %s answers again", self.backend.name)
            self._failing = None
        return call


def plausible(found: RecognizedIntent, text: str) -> bool:
    """What the user's own words allow, whatever the model called: an action needs a request and an
    action word, a state answer a question (or a request: "tell me ...")."""
    form = utterance_form(text).form
    if found.is_query:
        return form is not Form.OTHER
    words = normalize_name(text.replace("%", " percent"))
    return form is Form.REQUEST and bool(set(words.split()) & _ACTION_CUES)


def system_prompt(home: HomeSnapshot) -> str:
    lines = [
        "You operate the devices of a home for its voice assistant. The devices:",
        *(
            f"- {entity.name} ({entity.domain}{f', {entity.area}' if entity.area else ''})"
            for entity in home.entities
        ),
        "Call a function when the user wants a device changed or asks how a device is now. "
        "For anything else, answer with the single word: chat.",
    ]
    return "\n".join(lines)


def home_words(home: HomeSnapshot) -> set[str]:
    """The words that can only be about this home: device names, areas, and words for its kinds."""
    words = {w for entity in home.entities for name in entity.names for w in normalize_name(name).split()}
    words |= {w for area in home.areas for w in normalize_name(area).split()}
    for domain in {entity.domain for entity in home.entities}:
        words |= KIND_WORDS.get(domain, frozenset())
    return {w for w in words if len(w) > 2}


def intent_of(call: ToolCall, home: HomeSnapshot) -> RecognizedIntent | None:
    """The model's call as an HA intent on real devices; None when it names nothing of the home."""
    arguments: Mapping[str, Any] = call.arguments
    if call.name == "set_temperature":
        thing = resolve("thermostat", home, frozenset({"climate"}))
        degrees = _number(arguments.get("degrees"))
        if thing is None or degrees is None:
            return None
        return RecognizedIntent("HassClimateSetTemperature", {**thing.slots(), "temperature": degrees})
    thing = _thing(str(arguments.get("device") or ""), home)
    if thing is None:
        return None
    match call.name:
        case "turn_on" | "turn_off":
            return RecognizedIntent("HassTurnOn" if call.name == "turn_on" else "HassTurnOff", thing.slots())
        case "get_state":
            return RecognizedIntent("HassGetState", thing.slots())
        case "set_level":
            percent = _number(arguments.get("percent"))
            if percent is None:
                return None
            percent = max(0, min(100, round(percent)))
            if all(entity.domain == "cover" for entity in thing.entities):
                return RecognizedIntent("HassSetPosition", {**thing.slots(), "position": percent})
            return RecognizedIntent("HassLightSet", {**thing.slots(), "brightness": percent})
        case "change":
            up = arguments.get("direction") == "up"
            if all(entity.domain == "cover" for entity in thing.entities):  # a door goes up: it opens
                return RecognizedIntent("HassTurnOn" if up else "HassTurnOff", thing.slots())
            if all(entity.domain == "climate" for entity in thing.entities):
                degrees = stepped_temperature(thing, up)
                if degrees is None:
                    return None
                return RecognizedIntent(
                    "HassClimateSetTemperature", {**thing.slots(), "temperature": degrees}
                )
            return RecognizedIntent(
                "HassLightSet", {**thing.slots(), "brightness": stepped_brightness(thing, up)}
            )
    return None


def _thing(device: str, home: HomeSnapshot) -> Thing | None:
    entity = home.by_name(device)
    if entity is not None:
        return Thing((entity,))
    area = home.area(device)
    if area is not None:
        found = home.select(area)
        kinds = {entity.domain for entity in found}
        return Thing(found, area, kinds.pop() if len(kinds) == 1 else None) if found else None
    return resolve(normalize_name(device), home)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


_LEAD = re.compile(r"^(?:(?:hey|ok|okay|so|um|uh|oh|and|now|well|please) )+")


def _without_lead(words: str) -> str:
    return _LEAD.sub("", words)
