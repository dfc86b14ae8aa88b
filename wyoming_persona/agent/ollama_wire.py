"""Ollama's HTTP API as JSON: requests checked into typed values, replies shaped as Ollama sends them.

Shapes follow Ollama's API documentation and the official client (`ollama` 0.6, whose `_types.py`
reads them); Home Assistant's Ollama integration uses `/api/tags`, `/api/pull` and `/api/chat`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..personas import Persona
from .backends import ChatMessage, ToolCall
from .backends.base import ToolCallDict

LATEST = "latest"
ROLES = ("system", "user", "assistant", "tool")


class WireError(ValueError):
    """A malformed request; the message says what is wrong (answered with HTTP 400)."""


@dataclass(frozen=True)
class ChatCall:
    """A checked `/api/chat` request."""

    model: str
    """As the client wrote it: replies name the model the same way."""
    messages: tuple[ChatMessage, ...]
    tools: tuple[Mapping[str, Any], ...] = ()
    stream: bool = True


@dataclass(frozen=True)
class ModelCall:
    """A checked `/api/show` or `/api/pull` request."""

    model: str
    stream: bool = True


def decode_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise WireError(f"request body is not valid JSON: {err}") from err
    if not isinstance(body, dict):
        raise WireError("request body must be a JSON object")
    return body


def base_name(model: str) -> str | None:
    """`pirate:latest` or `pirate` -> `pirate`; None for another tag (`pirate:7b` is no model of ours)."""
    name, _, tag = model.strip().lower().partition(":")
    if tag and tag != LATEST:
        return None
    return name


def listed_name(name: str) -> str:
    return f"{name}:{LATEST}"


def parse_chat(body: Mapping[str, Any]) -> ChatCall:
    model = _model(body)
    messages = body.get("messages")
    if messages is None:
        messages = []
    if not isinstance(messages, list):
        raise WireError("messages must be a list")
    tools = body.get("tools")
    if tools is None:
        tools = []
    if not isinstance(tools, list):
        raise WireError("tools must be a list")
    for key in ("options",):
        if body.get(key) is not None and not isinstance(body[key], dict):
            raise WireError(f"{key} must be an object")
    return ChatCall(
        model=model,
        messages=tuple(_message(index, item) for index, item in enumerate(messages)),
        tools=tuple(_tool(index, item) for index, item in enumerate(tools)),
        stream=_stream(body),
    )


def parse_model_call(body: Mapping[str, Any]) -> ModelCall:
    return ModelCall(_model(body), _stream(body))


def _model(body: Mapping[str, Any]) -> str:
    model = body.get("model") or body.get("name")  # `name` is the older spelling (show, pull)
    if model is None:
        raise WireError("model is required")
    if not isinstance(model, str) or not model.strip():
        raise WireError("model must be a non-empty string")
    return model


def _stream(body: Mapping[str, Any]) -> bool:
    stream = body.get("stream")
    if stream is None:
        return True  # Ollama streams unless told not to
    if not isinstance(stream, bool):
        raise WireError("stream must be true or false")
    return stream


def _message(index: int, item: Any) -> ChatMessage:
    where = f"messages[{index}]"
    if not isinstance(item, dict):
        raise WireError(f"{where} must be an object")
    role = item.get("role")
    if role not in ROLES:
        raise WireError(f"{where}.role must be one of {', '.join(ROLES)}")
    content = item.get("content")
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise WireError(f"{where}.content must be a string")
    message: ChatMessage = {"role": role, "content": content}
    calls = item.get("tool_calls")
    if calls:
        if role != "assistant" or not isinstance(calls, list):
            raise WireError(f"{where}.tool_calls must be a list on an assistant message")
        message["tool_calls"] = [_tool_call(f"{where}.tool_calls[{n}]", call) for n, call in enumerate(calls)]
    return message


def _tool_call(where: str, call: Any) -> ToolCallDict:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise WireError(f"{where} must be {{'function': {{'name': ..., 'arguments': {{...}}}}}}")
    arguments = function.get("arguments")
    if isinstance(arguments, str):  # some clients send OpenAI's JSON-in-a-string
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError as err:
            raise WireError(f"{where}.function.arguments is not valid JSON: {err}") from err
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise WireError(f"{where}.function.arguments must be an object")
    return {"function": {"name": function["name"], "arguments": arguments}}


def _tool(index: int, item: Any) -> Mapping[str, Any]:
    function = item.get("function") if isinstance(item, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise WireError(f"tools[{index}] must be {{'type': 'function', 'function': {{'name': ...}}}}")
    return item


# -- replies ------------------------------------------------------------------------------------
def timestamp(moment: datetime | None = None) -> str:
    """Ollama's `created_at`: RFC 3339 in UTC with a Z."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def chat_part(
    model: str,
    content: str = "",
    tool_calls: Sequence[ToolCall] = (),
    *,
    done: bool = False,
    done_reason: str | None = None,
    total_duration: int | None = None,
) -> dict[str, Any]:
    """One `/api/chat` reply object (a line of the stream, or the whole non-streamed reply)."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = [call.as_dict() for call in tool_calls]
    part: dict[str, Any] = {"model": model, "created_at": timestamp(), "message": message, "done": done}
    if done:
        part["done_reason"] = done_reason or "stop"
        if total_duration is not None:
            part["total_duration"] = total_duration
    return part


def ndjson(part: Mapping[str, Any]) -> bytes:
    return json.dumps(part, ensure_ascii=False).encode() + b"\n"


def persona_digest(persona: Persona) -> str:
    """Changes when the persona's file does, like a model digest."""
    return hashlib.sha256(repr((persona.id, persona.spec)).encode()).hexdigest()


def details(persona: Persona | None) -> dict[str, Any]:
    family = "persona"
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": "",
        "quantization_level": "",
        **({"persona": persona.id} if persona is not None else {}),
    }


def model_entry(name: str, persona: Persona, modified_at: str) -> dict[str, Any]:
    """One model of `/api/tags` (`name` and `model` are the same, as Ollama lists them)."""
    listed = listed_name(name)
    return {
        "name": listed,
        "model": listed,
        "modified_at": modified_at,
        "size": 0,
        "digest": persona_digest(persona),
        "details": details(persona),
    }


def show_reply(name: str, persona: Persona, modified_at: str, backend: str) -> dict[str, Any]:
    """`/api/show`: what the model is (a persona answering through our backend) and what it can do."""
    following = "the active persona" if name != persona.id else persona.name
    return {
        "modelfile": f"# {listed_name(name)}: {following}, answering through {backend}\n",
        "parameters": "",
        "template": "",
        "details": details(persona),
        "model_info": {"general.architecture": "persona", "general.basename": name},
        "capabilities": ["completion", "tools"],
        "modified_at": modified_at,
    }
