"""Any OpenAI-compatible server (vLLM, llama.cpp server, LM Studio, LocalAI): SSE chat completions."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp

from ..models import server_model
from .base import BackendError, ChatMessage, ChatRequest, Delta, ToolCall
from .settings import BackendSettings, OpenAISettings

_LOGGER = logging.getLogger(__name__)


class OpenAIChatBackend:
    """Streams `<base_url>/chat/completions` with `stream: true` and parses the server-sent events."""

    def __init__(self, settings: OpenAISettings) -> None:
        self.settings = settings
        self.url = settings.base_url.rstrip("/") + "/chat/completions"
        self.name = f"openai-compatible {settings.model} at {settings.base_url}"
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Accept": "text/event-stream"}
            if self.settings.api_key:
                headers["Authorization"] = f"Bearer {self.settings.api_key}"
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.settings.connect_timeout)
            self._session = aiohttp.ClientSession(headers=headers, timeout=timeout)
        return self._session

    def _body(self, request: ChatRequest) -> dict:
        settings = self.settings
        body: dict = {
            "model": server_model(request.model, settings.model),
            "messages": openai_messages(request.messages),
            "stream": True,
        }
        if request.tools:
            body["tools"] = [dict(tool) for tool in request.tools]  # the same function schemas
        temperature = request.temperature if request.temperature is not None else settings.temperature
        if temperature is not None:
            body["temperature"] = temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.repeat_penalty is not None:
            body["repeat_penalty"] = request.repeat_penalty  # llama.cpp server, LM Studio, LocalAI
        max_tokens = request.max_tokens or settings.max_tokens
        if max_tokens:
            body["max_tokens"] = max_tokens
        if settings.seed is not None:
            body["seed"] = settings.seed
        return body

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        try:
            async with self._get_session().post(self.url, json=self._body(request)) as response:
                if response.status >= 400:
                    raise BackendError(_http_error(self.url, response.status, await response.text()))
                finished = done = False
                calls = ToolCallFragments()
                async for raw in response.content:
                    delta = _parse_sse_line(raw, calls)
                    if delta is None:
                        continue
                    if delta is _DONE:
                        done = True
                        break
                    finished = finished or delta.finish_reason is not None
                    yield delta
                if done and not finished:
                    yield Delta(finish_reason="stop", tool_calls=calls.take())
                elif not finished:
                    # llama.cpp's server answers 200 and then ends the stream empty when generation
                    # fails (e.g. the prompt exceeds its context window): a cut reply, not a finished one.
                    raise BackendError(
                        f"{self.url} ended the stream without a finish reason or [DONE]; "
                        "the server failed mid-reply (its log has the cause)"
                    )
        except aiohttp.ClientPayloadError as err:
            raise BackendError(f"{self.url} broke off the reply: {err}") from err
        except aiohttp.ClientError as err:
            raise BackendError(f"{self.url} failed: {err or type(err).__name__}") from err

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


_DONE = Delta(finish_reason="done")


def _http_error(url: str, status: int, body: str) -> str:
    """A readable message from an error response: OpenAI's `{"error": {"message"}}`, FastAPI's
    `{"detail"}` (llama.cpp's server) or the start of whatever else the server sent."""
    detail = body[:200].strip()
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and error.get("message"):
            detail = str(error["message"])
        elif isinstance(error, str) and error:
            detail = error
        elif parsed.get("detail"):
            detail = str(parsed["detail"])
    message = f"{url} answered HTTP {status}: {detail}"
    if status in (401, 403):
        message += " (check the API key: --openai-api-key or OPENAI_API_KEY)"
    return message


def _parse_sse_line(raw: bytes, calls: ToolCallFragments | None = None) -> Delta | None:
    """One SSE line -> a Delta, _DONE for `data: [DONE]`, None for comments, blanks and other fields.
    Pieces of tool calls go into `calls`; the Delta with the finish reason carries them whole."""
    line = raw.decode("utf-8", errors="replace").strip()
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if payload == "[DONE]":
        return _DONE
    try:
        event = json.loads(payload)
    except json.JSONDecodeError as err:
        raise BackendError(f"bad server-sent event: {payload[:80]!r}") from err
    if not isinstance(event, dict):
        raise BackendError(f"bad server-sent event: {payload[:80]!r}")
    if "error" in event:
        raise BackendError(f"server error: {event['error']}")
    choices = event.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return None
    choice = choices[0]
    delta = choice.get("delta") or {}
    content = delta.get("content") or ""
    finish = choice.get("finish_reason")
    if calls is not None and delta.get("tool_calls"):
        calls.add(delta["tool_calls"])
    found = calls.take() if finish and calls is not None else ()
    if not content and not finish:
        return None
    return Delta(content, finish, found)


class ToolCallFragments:
    """Streamed tool calls come in pieces per `index`: the name first, the JSON arguments in slices."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}

    def add(self, fragments: Any) -> None:
        if not isinstance(fragments, list):
            raise BackendError(f"bad tool_calls in a streamed delta: {str(fragments)[:80]!r}")
        for position, fragment in enumerate(fragments):
            function = fragment.get("function") if isinstance(fragment, dict) else None
            if not isinstance(function, dict):
                continue
            index = fragment.get("index", position)
            call = self._calls.setdefault(
                index if isinstance(index, int) else position, {"name": "", "arguments": ""}
            )
            call["name"] += function.get("name") or ""
            call["arguments"] += function.get("arguments") or ""

    def take(self) -> tuple[ToolCall, ...]:
        """The complete calls so far, in order; a call whose arguments are not a JSON object is dropped."""
        found = []
        for _, call in sorted(self._calls.items()):
            try:
                arguments = json.loads(call["arguments"]) if call["arguments"].strip() else {}
            except ValueError:
                arguments = None
            if call["name"] and isinstance(arguments, dict):
                found.append(ToolCall(call["name"], arguments))
            else:
                _LOGGER.debug("Ignoring a malformed tool call: %s", call)
        self._calls.clear()
        return tuple(found)


def openai_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """Our messages in OpenAI's form: tool calls get ids (`call_1`...) with JSON-string arguments, and
    each tool result names the call it answers (results follow their calls in order)."""
    converted: list[dict[str, Any]] = []
    waiting: list[str] = []
    count = 0
    for message in messages:
        role = message["role"]
        if role == "assistant" and message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                count += 1
                waiting.append(f"call_{count}")
                function = call["function"]
                calls.append(
                    {
                        "id": waiting[-1],
                        "type": "function",
                        "function": {
                            "name": function["name"],
                            "arguments": json.dumps(function["arguments"]),
                        },
                    }
                )
            converted.append(
                {"role": "assistant", "content": message["content"] or None, "tool_calls": calls}
            )
        elif role == "tool":
            call_id = waiting.pop(0) if waiting else f"call_{count}"
            converted.append({"role": "tool", "tool_call_id": call_id, "content": message["content"]})
        else:
            converted.append({"role": role, "content": message["content"]})
    return converted


async def create(settings: BackendSettings) -> OpenAIChatBackend:
    return OpenAIChatBackend(settings.openai)
