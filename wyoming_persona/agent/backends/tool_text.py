"""Tool calls as plain chat text, the way Qwen2.5's chat template writes them, for llama.cpp.

The tools go into the system message as a `<tools>` block of JSON schemas; the model answers a call
with `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`; a tool's result goes back as a user
turn holding `<tool_response>...</tool_response>` (consecutive results share one turn). Rendering
this ourselves keeps every message a plain system/user/assistant text, so the prompt cache, the
context fitting and any GGUF's chat template work unchanged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .base import ToolCall

_LOGGER = logging.getLogger(__name__)

OPEN, CLOSE = "<tool_call>", "</tool_call>"
TOOLS_INTRO = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_OUTRO = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
    'within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, '
    '"arguments": <args-json-object>}\n</tool_call>'
)
TOOLS_RULE = (
    "\n\nWhenever one of these functions can do or answer what the user asks, call it: reply with "
    "only the <tool_call> block, no other words and no markdown."
)
"""Not in Qwen's template: without it qwen-1.5b explains the call in words instead of making it."""
RESULT_RULE = "Now tell the user in one short sentence what happened, in your own way of speaking."
"""Ends the turn that holds the tool results: without it qwen-1.5b calls the same tool again, or
describes the function it called."""


def render_messages(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Plain system/user/assistant messages: the tools in the (first) system message, tool calls and
    tool results as text. Messages without tools or tool turns come back as they were."""
    rendered: list[dict] = []
    previous = None
    for message in messages:
        role, content = message["role"], message.get("content") or ""
        if role == "tool":
            block = f"<tool_response>\n{content}\n</tool_response>"
            if previous == "tool":
                rendered[-1]["content"] = rendered[-1]["content"].removesuffix(_RESULT_END) + "\n" + block
            else:
                rendered.append({"role": "user", "content": block})
            rendered[-1]["content"] += _RESULT_END
        elif role == "assistant" and message.get("tool_calls"):
            written = [content] if content else []
            written += [_call_text(call["function"]) for call in message["tool_calls"]]
            rendered.append({"role": "assistant", "content": "\n".join(written)})
        else:
            rendered.append({"role": role, "content": content})
        previous = role
    if tools:
        schemas = "".join("\n" + json.dumps(tool, ensure_ascii=False) for tool in tools)
        block = TOOLS_INTRO + schemas + TOOLS_OUTRO + TOOLS_RULE
        if rendered and rendered[0]["role"] == "system":
            rendered[0]["content"] += block
        else:
            rendered.insert(0, {"role": "system", "content": block.lstrip()})
    return rendered


_RESULT_END = "\n" + RESULT_RULE


def tool_names(tools: Iterable[Mapping[str, Any]]) -> list[str]:
    return [str((tool.get("function") or {}).get("name")) for tool in tools]


def _call_text(function: Mapping[str, Any]) -> str:
    arguments = json.dumps(function.get("arguments") or {}, ensure_ascii=False)
    return f'{OPEN}\n{{"name": {json.dumps(function["name"])}, "arguments": {arguments}}}\n{CLOSE}'


def parse_call(text: str) -> ToolCall | None:
    """`{"name": ..., "arguments": {...}}` (arguments may be a JSON string) -> a ToolCall, else None."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        return None
    arguments = data.get("arguments", data.get("parameters")) or {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    # Small models fill every parameter: an empty one would narrow the target to nothing.
    kept = {key: value for key, value in arguments.items() if value not in (None, "", [], {})}
    return ToolCall(data["name"], kept)


class ToolCallParser:
    """Splits streamed model text into the words to speak and the tool calls.

    Qwen writes `<tool_call>{...}</tool_call>`; small models often write the same JSON bare, in a
    ```json fence or in `<tools>` tags instead. All count as calls when the JSON is
    `{"name": <an offered tool>, "arguments": {...}}`; any other JSON or fence is spoken as it was.
    Text that may begin such a block waits for the next piece, so no `<tool_` or `{"na` is spoken.
    """

    def __init__(self, tool_names: Iterable[str] = ()) -> None:
        self.tool_names = frozenset(tool_names)
        """Names a bare JSON call may have (a tagged call may name anything: HA answers unknown ones)."""
        self._pending = ""
        self._block: _Block | None = None

    def feed(self, text: str) -> tuple[str, tuple[ToolCall, ...]]:
        self._pending += text
        spoken: list[str] = []
        calls: list[ToolCall] = []
        while True:
            if self._block is not None:
                end = self._block.end(self._pending)
                if end < 0:
                    break
                raw, self._pending = self._pending[:end], self._pending[end:]
                spoken.append(self._close(raw, calls))
                continue
            start, block = _next_block(self._pending)
            if block is None:
                keep = _partial_start(self._pending)
                spoken.append(self._pending[: len(self._pending) - keep])
                self._pending = self._pending[len(self._pending) - keep :]
                break
            spoken.append(self._pending[:start])
            self._pending = self._pending[start:]
            self._block = block
        return "".join(spoken), tuple(calls)

    def finish(self) -> tuple[str, tuple[ToolCall, ...]]:
        """The end of the reply: an unclosed block still counts if its JSON is a whole call."""
        rest, self._pending = self._pending, ""
        calls: list[ToolCall] = []
        if self._block is None:
            return rest, ()
        spoken = self._close(rest, calls, unclosed=True)
        return spoken, tuple(calls)

    def _close(self, raw: str, calls: list[ToolCall], unclosed: bool = False) -> str:
        """A finished block: its calls, or its text when it holds none."""
        block, self._block = self._block, None
        parsed = [call for call in map(parse_call, block.bodies(raw)) if call is not None]
        found = parsed if block.tagged else [call for call in parsed if call.name in self.tool_names]
        if found:
            calls.extend(found)
            return ""
        if parsed:  # a call of a tool that was not offered ("HassGetLiveContext"): never words
            _LOGGER.debug("Dropping a call of a tool that was not offered: %r", raw)
            return ""
        if block.tagged or (unclosed and block.looks_like_call(raw)):
            _LOGGER.debug("Dropping a tool call that is not {name, arguments} JSON: %r", raw)
            return ""
        return raw


@dataclass(frozen=True)
class _Block:
    opener: str
    closer: str
    tagged: bool
    """`<tool_call>`/`<tools>`: whatever is inside is meant as a call, never words."""

    def end(self, text: str) -> int:
        """Index just past the block's end in `text` (which starts with the opener), or -1."""
        if self.opener == "{":
            return _json_end(text)
        found = text.find(self.closer, len(self.opener))
        return -1 if found < 0 else found + len(self.closer)

    def bodies(self, raw: str) -> list[str]:
        """The JSON texts inside (a `<tools>` or fenced block may hold several, one per line)."""
        inner = raw[len(self.opener) :]
        if inner.endswith(self.closer) and self.opener != "{":
            inner = inner[: -len(self.closer)]
        if self.opener == "{":
            return [raw]
        if self.opener == FENCE:
            inner = inner.removeprefix("json").removeprefix("JSON")
        inner = inner.replace(OPEN, "\n").replace(CLOSE, "\n").strip()
        try:
            json.loads(inner)
        except ValueError:
            return [line for line in inner.splitlines() if line.strip()]
        return [inner]

    def looks_like_call(self, raw: str) -> bool:
        return '"name"' in raw[:40]


FENCE = "```"
_BLOCKS = (
    _Block(OPEN, CLOSE, tagged=True),
    _Block("<tools>", "</tools>", tagged=True),
    _Block(FENCE, FENCE, tagged=False),
    _Block("{", "}", tagged=False),
)


def _next_block(text: str) -> tuple[int, _Block | None]:
    """The first block opener in `text`: (its index, the block), or (-1, None)."""
    best: tuple[int, _Block | None] = (-1, None)
    for block in _BLOCKS:
        index = text.find(block.opener)
        if index >= 0 and (best[1] is None or index < best[0]):
            best = (index, block)
    return best


def _partial_start(text: str) -> int:
    """Length of the longest end of `text` that may begin a block (`<tool`, "``")."""
    for size in range(min(len(text), len(OPEN) - 1), 0, -1):
        tail = text[-size:]
        if any(block.opener.startswith(tail) for block in _BLOCKS if len(block.opener) > 1):
            return size
    return 0


def _json_end(text: str) -> int:
    """Index just past the JSON object `text` starts with (braces counted outside strings), or -1."""
    depth, in_string, escaped = 0, False, False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index + 1
    return -1
