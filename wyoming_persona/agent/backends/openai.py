"""Any OpenAI-compatible server (vLLM, llama.cpp server, LM Studio, LocalAI): SSE chat completions."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import aiohttp

from ..models import server_model
from .base import BackendError, ChatRequest, Delta
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
            "messages": [dict(message) for message in request.messages],
            "stream": True,
        }
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
                async for raw in response.content:
                    delta = _parse_sse_line(raw)
                    if delta is None:
                        continue
                    if delta is _DONE:
                        done = True
                        break
                    finished = finished or delta.finish_reason is not None
                    yield delta
                if done and not finished:
                    yield Delta(finish_reason="stop")
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


def _parse_sse_line(raw: bytes) -> Delta | None:
    """One SSE line -> a Delta, _DONE for `data: [DONE]`, None for comments, blanks and other fields."""
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
    content = (choice.get("delta") or {}).get("content") or ""
    finish = choice.get("finish_reason")
    if not content and not finish:
        return None
    return Delta(content, finish)


async def create(settings: BackendSettings) -> OpenAIChatBackend:
    return OpenAIChatBackend(settings.openai)
