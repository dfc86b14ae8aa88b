"""What every chat backend offers: stream a reply to a list of messages, piece by piece."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, Protocol, TypedDict


class ToolCallFunction(TypedDict):
    name: str
    arguments: dict[str, Any]


class ToolCallDict(TypedDict):
    """A tool call in a message, in Ollama's form."""

    function: ToolCallFunction


class ChatMessage(TypedDict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: NotRequired[list[ToolCallDict]]
    """An assistant message's tool calls (Ollama's form); a `tool` message answers them in order."""


@dataclass(frozen=True)
class ToolCall:
    """The model asks for a function; `arguments` is the decoded JSON object."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> ToolCallDict:
        return {"function": {"name": self.name, "arguments": dict(self.arguments)}}


@dataclass(frozen=True)
class ChatRequest:
    """One generation: the full message list plus the persona's overrides of the backend defaults."""

    messages: tuple[ChatMessage, ...]
    model: str | None = None
    """A model name for Ollama/OpenAI-compatible servers; None uses the backend's default."""
    temperature: float | None = None
    top_p: float | None = None
    repeat_penalty: float | None = None
    """None uses the backend's default (the embedded backend's `repeat_penalty` setting)."""
    max_tokens: int | None = None
    tools: tuple[Mapping[str, Any], ...] = ()
    """Function schemas the model may call (`{"type": "function", "function": {...}}`); empty: none."""
    avoid_openings: tuple[str, ...] = ()
    """The reply must not start with the first token of these (a refusal being asked again); only the
    embedded backend can keep to it, the others ignore it."""


@dataclass(frozen=True)
class Delta:
    """A piece of the reply as the model produced it; the last one carries the finish reason."""

    text: str = ""
    finish_reason: str | None = None
    """"stop", "length" (cut by max_tokens) or another backend-specific reason; None until the end."""
    tool_calls: tuple[ToolCall, ...] = ()
    """Complete tool calls the model made (never spoken)."""


class BackendError(Exception):
    """The backend could not produce a reply (unreachable, HTTP error, bad response, model failure)."""


class ChatBackend(Protocol):
    name: str
    """Short label for logs and the service info, e.g. "ollama llama3.2 at http://127.0.0.1:11434"."""

    def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Stream the reply; raise BackendError on failure. Closing the iterator stops generation."""
        ...

    async def close(self) -> None: ...
