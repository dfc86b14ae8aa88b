"""Home Assistant's prompt shape for the Ollama-compatible API, kept on disk and processed at start.

HA's Ollama integration opens every turn with its system message (the Assist rules and the exposed
entities, about 1,800 tokens with the tools) behind the persona's prompt. The embedded model reads
all of it on the first turn after a start: about 20 s for qwen-1.5b on two cores, longer than HA
waits for a first word. So the first turn's shape (HA's context, its tools and the model names it
asked for) is written beside the processed persona prompts, and at the next start each named persona's
opening in that shape is processed ahead like the persona prompts are, or read back from the prompt
folder (`backends/prompt_cache.py`): the first turn then reads only its own question.

The opening is the one `respond_turn` builds (persona prompt first, HA's context after it, the tools),
captured from `respond_turn` itself so the two never drift apart.

Until a shape's opening is processed (the very first turn, or a new shape: new entities exposed, a
new HA version), a question about nothing of the home is answered by the persona alone, without HA's
context and tools, so it comes in about a second, not twenty; the opening is processed in the
background after the turn, and any turn stops that work and lets it start again after.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backends import ChatRequest, Delta
from .chat import ClientTurn, PersonaChat, respond_turn
from .ha_context import mentions_home

_LOGGER = logging.getLogger(__name__)

FILE_NAME = "ha-prompt-shape.json"
VERSION = 1
MAX_MODELS = 4
"""Model names remembered (each is processed at start, so each costs a prompt's processing once)."""


@dataclass(frozen=True)
class PromptShape:
    """What HA put before the user's words: its context (already without HA's generic lines) and tools,
    and the model names (personas) it asked for, the latest first."""

    models: tuple[str, ...]
    context: str
    tools: tuple[Mapping[str, Any], ...]

    def same_prompt(self, other: PromptShape | None) -> bool:
        return other is not None and (self.context, self.tools) == (other.context, other.tools)


TOOL_ORDER = (
    "HassTurnOn",
    "HassTurnOff",
    "HassSetPosition",
    "HassStopMoving",
    "HassCancelAllTimers",
    "HassLightSet",
    "HassClimateSetTemperature",
    "HassBroadcast",
    "GetDateTime",
    "GetLiveContext",
)
"""The order HA 2026.2 usually lists these tools in. In alphabetical order qwen-1.5b, as the
assistant, explained two commands in words instead of calling HassTurnOn (bench/tool_calls.py: 6 of
11 right against 8)."""


def stable_tools(tools: Sequence[Mapping[str, Any]]) -> tuple[Mapping[str, Any], ...]:
    """HA's tools in one order (TOOL_ORDER, then any others by name) with every `enum` sorted. HA
    builds them from sets and from the order its integrations load in, which change from one HA start
    to the next (the same home's HassTurnOn listed its device classes in another order, and
    HassLightSet came after HassClimateSetTemperature), so the same home would give a new prompt after
    every HA restart."""
    return tuple(sorted((_sorted_enums(tool) for tool in tools), key=_tool_rank))


def _tool_rank(tool: Mapping[str, Any]) -> tuple[int, str]:
    function = tool.get("function")
    name = str(function.get("name", "")) if isinstance(function, Mapping) else ""
    return (TOOL_ORDER.index(name) if name in TOOL_ORDER else len(TOOL_ORDER), name)


def _sorted_enums(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _sorted_enum(key, item) for key, item in value.items()}
    if isinstance(value, list):
        return [_sorted_enums(item) for item in value]
    return value


def _sorted_enum(key: str, value: Any) -> Any:
    if key == "enum" and isinstance(value, list) and all(isinstance(item, str) for item in value):
        return sorted(value)
    return _sorted_enums(value)


class ShapeFile:
    """The shape on disk (JSON, written atomically); a missing or bad file is no shape (and a warning)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / FILE_NAME

    def load(self) -> PromptShape | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            _LOGGER.warning("Ignoring %s: %s", self.path, err)
            return None
        try:
            if data.get("version") != VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {VERSION}")
            models, context, tools = data["models"], data["context"], data["tools"]
            if not (isinstance(models, list) and all(isinstance(m, str) for m in models)):
                raise ValueError("models must be a list of names")
            if not isinstance(context, str) or not isinstance(tools, list):
                raise ValueError("context must be text and tools a list")
            if not all(isinstance(tool, dict) for tool in tools):
                raise ValueError("each tool must be an object")
        except (AttributeError, KeyError, ValueError) as err:
            _LOGGER.warning("Ignoring %s: %s", self.path, err)
            return None
        return PromptShape(tuple(models[:MAX_MODELS]), context, stable_tools(tools))

    def save(self, shape: PromptShape) -> None:
        data = {"version": VERSION, "models": list(shape.models), "context": shape.context}
        data["tools"] = [dict(tool) for tool in shape.tools]
        temporary = self.path.with_suffix(f".tmp{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as err:
            with contextlib.suppress(OSError):
                temporary.unlink()
            _LOGGER.warning("Could not save Home Assistant's prompt shape in %s: %s", self.path, err)


class _Capture:
    """A backend that keeps the request it is given and writes nothing."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[ChatRequest] = []

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        self.requests.append(request)
        return
        yield  # an async generator that yields nothing

    async def close(self) -> None:
        pass


async def opening_request(chat: PersonaChat, model: str | None, shape: PromptShape) -> ChatRequest:
    """The request `respond_turn` makes for a first question in this shape (its question left open)."""
    capture = _Capture(chat.backend.name)
    shadow = copy.copy(chat)
    shadow.backend, shadow.leak_metrics = capture, None
    turn = ClientTurn(({"role": "user", "content": "?"},), model, shape.context, shape.tools)

    async def ignore(*_: object) -> None:
        return None

    await respond_turn(shadow, turn, ignore, ignore)
    return capture.requests[0]


class ShapeKeeper:
    """Remembers HA's prompt shape as the API sees it and has its openings processed ahead."""

    def __init__(self, chat: PersonaChat, folder: Path | None) -> None:
        self.chat = chat
        self.file = ShapeFile(folder) if folder is not None else None
        self.shape = self.file.load() if self.file is not None else None
        self._processed: PromptShape | None = None
        """The shape whose openings the model holds ready (processed, or read back from disk)."""
        self._task: asyncio.Task | None = None

    @property
    def can_warm(self) -> bool:
        return getattr(self.chat.backend, "warm", None) is not None

    def turn_to_answer(self, model: str, turn: ClientTurn) -> ClientTurn:
        """`turn`, or the persona alone (without HA's context and tools) for a question about nothing
        of the home while this shape's opening for `model` is not ready: reading it with the question
        would take as long as processing it (about 20 s for qwen-1.5b on two cores)."""
        last = turn.messages[-1] if turn.messages else None
        asked = last is not None and last["role"] == "user"
        if not self.can_warm or not asked or not turn.tools:  # without HA's tools its context is short
            return turn
        ready = self._processed
        if ready is not None and ready.same_prompt(self._shape_of(turn)) and model in ready.models:
            return turn
        if mentions_home(last["content"], turn.context):
            return turn
        _LOGGER.info(
            "Home Assistant's prompt for %s is not processed yet: answering %r as the persona alone",
            model,
            last["content"],
        )
        return ClientTurn(turn.messages, turn.persona_id)

    @staticmethod
    def _shape_of(turn: ClientTurn) -> PromptShape:
        return PromptShape((), turn.context, tuple(turn.tools))

    def note(self, model: str, context: str, tools: Sequence[Mapping[str, Any]]) -> None:
        """A turn of HA's Ollama integration: remember its shape when it is new (or a new model name),
        and have its opening processed and saved to the prompt folder once the turn is over."""
        if not context and not tools:
            return
        new = PromptShape((model,), context, tuple(tools))
        old = self.shape
        if new.same_prompt(old):
            if model in old.models:
                return
            new = PromptShape((model, *old.models)[:MAX_MODELS], context, new.tools)
        self.shape = new
        _LOGGER.info(
            "Home Assistant's prompt shape for %s is new (%d characters of context, %d tools): "
            "processed ahead at each start from now on",
            model,
            len(context),
            len(tools),
        )
        if self.file is not None:
            self.file.save(new)
        if self.can_warm and (self._task is None or self._task.done()):
            self.start_warming()

    def start_warming(self, after: asyncio.Task | None = None) -> None:
        """Process the remembered shape's openings in the background (after `after`)."""
        self._task = asyncio.create_task(self.warm(after), name="ha-prompt-shape")

    async def warm(self, after: asyncio.Task | None = None) -> None:
        """Process (or read back) the opening of every remembered model in the remembered shape, and
        again for a shape that came meanwhile."""
        if after is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(after)
        warm = getattr(self.chat.backend, "warm", None)
        from .ollama_api import ModelNotFound, resolve

        while warm is not None and (shape := self.shape) is not None and shape is not self._processed:
            try:
                requests = []
                for model in shape.models:
                    with contextlib.suppress(ModelNotFound):  # a persona deleted since
                        requests.append(await opening_request(self.chat, resolve(self.chat, model), shape))
                await warm(requests, "Home Assistant's prompt")
            except Exception:  # a background task's boundary: the first turn is only slower
                _LOGGER.exception("Could not process Home Assistant's prompt shape ahead")
                return
            self._processed = shape

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
