"""Processed prompt prefixes (llama.cpp KV state) kept per exact token prefix.

llama.cpp reuses only the longest common prefix with what it evaluated last, so a new conversation
or a persona switch re-reads the whole system prompt. This cache keeps a snapshot of the KV state
after each prompt prefix (system prompt plus whatever fixed messages lead the conversation, up to
the first user's text), keyed by its exact tokens, and restores the longest stored prefix of a
request before llama.cpp evaluates it: only the tokens after it are evaluated.

It hooks into llama-cpp-python (0.3.36) through `Llama.set_cache`: `create_completion` asks
`cache[prompt_tokens]` before evaluating, with the exact tokens of the rendered chat template.
The cache answers by restoring the snapshot itself (without `Llama.load_state`, which fills the
n_batch x n_vocab score buffer, ~180 MB for a Qwen vocabulary) and then reports a miss. It is
truthy only while a lookup is expected, so llama.cpp never saves a full state after each reply
(`Llama.save_state` copies that buffer too). Everything here runs on the model's worker thread.

Snapshots of persona openings (what `warm` stores) are also written to a folder (`PromptFolder`),
keyed by the model file, the context size and llama-cpp's version: a restarted service loads them
instead of processing every persona's prompt again (about 20 s each for qwen-1.5b on two cores).
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_LOGGER = logging.getLogger(__name__)

MAX_HEADS = 64
"""Message heads remembered with their token prefix, so a known prefix is not rendered again."""

STOPPED = "llama_decode returned 2"
"""llama-cpp-python's error for a decode its abort callback stopped (the generation was cancelled)."""
_SENTINELS = ("7", "Hi")
"""Two user texts with nothing in common: the rendered prompts agree exactly up to the user's text."""


@dataclass(frozen=True)
class Snapshot:
    """The KV state after evaluating exactly `tokens`."""

    tokens: tuple[int, ...]
    data: bytearray
    """llama_state_get_data(): the used KV cells, the last logits and the output ids."""

    @property
    def size(self) -> int:
        return len(self.data) + 8 * len(self.tokens)


@dataclass(frozen=True)
class PromptFolder:
    """Snapshots of processed prompts on disk for one model file and context size."""

    folder: Path
    model_key: str

    MAX_FILES = 64
    """Oldest files beyond this go (old persona prompts, other models)."""

    @classmethod
    def for_model(cls, folder: Path, llama: Any) -> PromptFolder:
        import llama_cpp

        model = Path(llama.model_path).resolve()
        stat = model.stat()
        identity = f"{model}|{stat.st_size}|{stat.st_mtime_ns}|{llama.n_ctx()}|{llama_cpp.__version__}"
        return cls(folder, hashlib.sha256(identity.encode()).hexdigest()[:16])

    def path(self, tokens: Sequence[int]) -> Path:
        digest = hashlib.sha256(",".join(map(str, tokens)).encode()).hexdigest()[:32]
        return self.folder / f"{self.model_key}-{digest}.kv"

    def load(self, tokens: Sequence[int]) -> bytearray | None:
        try:
            return bytearray(self.path(tokens).read_bytes())
        except FileNotFoundError:
            return None
        except OSError as err:
            _LOGGER.warning("Could not read a saved prompt snapshot: %s", err)
            return None

    def save(self, tokens: Sequence[int], data: bytearray) -> None:
        """Write atomically; a folder that cannot be written is a warning, not an error."""
        target = self.path(tokens)
        temporary = target.with_suffix(f".tmp{os.getpid()}")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            temporary.write_bytes(data)
            os.replace(temporary, target)
            files = sorted(self.folder.glob("*.kv"), key=lambda f: f.stat().st_mtime)
            for old in files[: max(0, len(files) - self.MAX_FILES)]:
                old.unlink(missing_ok=True)
        except OSError as err:
            with contextlib.suppress(OSError):
                temporary.unlink()
            _LOGGER.warning("Could not save a prompt snapshot in %s: %s", self.folder, err)


@dataclass(frozen=True)
class CacheStats:
    entries: int
    size_bytes: int
    capacity_bytes: int
    restores: int
    """Requests that started from a snapshot instead of re-reading their prefix."""
    saves: int
    loads: int = 0
    """Prompt prefixes read from the prompt folder instead of processed."""


class _Mode(enum.Enum):
    IDLE = "idle"
    LOOKUP = "lookup"
    CAPTURE = "capture"


class _Captured(Exception):
    """Raised from the lookup in capture mode: the rendered prompt, nothing evaluated."""

    def __init__(self, tokens: list[int]) -> None:
        super().__init__("prompt captured")
        self.tokens = tokens


class PromptCache:
    """Snapshots of processed prompt prefixes for one `Llama`, least recently used evicted past the cap."""

    def __init__(self, llama: Any, capacity_bytes: int, folder: PromptFolder | None = None) -> None:
        self._llama = llama
        self.capacity_bytes = capacity_bytes
        self.folder = folder
        self._loads = 0
        self._entries: OrderedDict[tuple[int, ...], Snapshot] = OrderedDict()
        self._heads: OrderedDict[tuple[tuple[str, str], ...], tuple[int, ...]] = OrderedDict()
        self._mode = _Mode.IDLE
        self._restores = 0
        self._saves = 0

    @classmethod
    def of(cls, llama: Any, capacity_mib: float, folder: Path | None = None) -> PromptCache | None:
        """The model's cache, attached on first use; None when the cap is 0 (disabled). With `folder`,
        warmed prefixes are also kept on disk there."""
        if capacity_mib <= 0:
            return None
        real = _unwrap(llama)
        cache = getattr(real, "cache", None)
        if not isinstance(cache, cls):
            disk = PromptFolder.for_model(folder, real) if folder is not None else None
            cache = cls(real, int(capacity_mib * 2**20), disk)
            real.set_cache(cache)
        return cache

    @property
    def stats(self) -> CacheStats:
        size = sum(snapshot.size for snapshot in self._entries.values())
        return CacheStats(
            len(self._entries), size, self.capacity_bytes, self._restores, self._saves, self._loads
        )

    def prefixes(self) -> list[tuple[int, ...]]:
        """Stored prefixes, least recently used first."""
        return list(self._entries)

    # -- called by the backend (worker thread) ---------------------------------------------------
    def prepare(self, messages: Sequence[dict]) -> None:
        """Before a generation: store the prefix up to the first user's text unless a stored prefix
        extends it (a warmed persona: system prompt and example turns), then let the coming
        `create_completion` restore the longest stored prefix of its prompt."""
        first_user = next((i for i, m in enumerate(messages) if m["role"] == "user"), None)
        if first_user is not None:
            try:
                head = self._head_prefix(messages[: first_user + 1])
                if not any(prefix[: len(head)] == head for prefix in self._entries):
                    self.remember(head, keep_live=True)
            except (RuntimeError, ValueError) as err:  # e.g. a prompt longer than the context
                if str(err) == STOPPED:
                    raise
                _LOGGER.warning("Prompt cache skipped: %s", err)
        self._real_cache_is_self()
        self._mode = _Mode.LOOKUP

    def _head_prefix(self, messages: Sequence[dict]) -> tuple[int, ...]:
        head = tuple((m["role"], m["content"]) for m in messages[:-1])
        prefix = self._heads.get(head)
        if prefix is None:
            prefix = self.prefix_of(messages)
            self._heads[head] = prefix
            while len(self._heads) > MAX_HEADS:
                self._heads.popitem(last=False)
        else:
            self._heads.move_to_end(head)
        return prefix

    def warm(self, messages: Sequence[dict]) -> int:
        """Store the prefix of `messages` up to its last message's text (a new conversation's
        question), from the prompt folder if it has it; returns the prefix's length in tokens."""
        prefix = self.prefix_of(messages)
        if prefix not in self._entries and self.folder is not None:
            data = self.folder.load(prefix)
            if data is not None:
                self._keep(Snapshot(prefix, data))
                self._loads += 1
                return len(prefix)
        self.remember(prefix)
        if self.folder is not None and prefix in self._entries and not self.folder.path(prefix).exists():
            self.folder.save(prefix, self._entries[prefix].data)
        return len(prefix)

    def prefix_of(self, messages: Sequence[dict]) -> tuple[int, ...]:
        """The tokens the chat template renders before the last message's text, exactly."""
        variants = [self.render([*messages[:-1], {**messages[-1], "content": text}]) for text in _SENTINELS]
        return tuple(variants[0][: _common_prefix(*variants)])

    def render(self, messages: Sequence[dict]) -> list[int]:
        """The prompt tokens `create_chat_completion(messages)` would evaluate (nothing is evaluated)."""
        llama = self._llama
        handler = (
            llama.chat_handler
            or llama._chat_handlers.get(llama.chat_format)  # what create_chat_completion picks
            or _chat_completion_handler(llama.chat_format)
        )
        previous = llama.cache
        llama.set_cache(self)
        self._mode = _Mode.CAPTURE
        try:
            handler(llama=llama, messages=list(messages), max_tokens=1, stream=False)
        except _Captured as captured:
            return captured.tokens
        finally:
            self._mode = _Mode.IDLE
            llama.set_cache(previous)
        raise RuntimeError("the chat handler never looked up its prompt")

    def remember(self, prefix: tuple[int, ...], keep_live: bool = False) -> None:
        """Evaluate `prefix` (reusing what the model already holds of it) and store its snapshot.

        The snapshot must hold exactly `prefix`, so a longer live state is cut back to it; with
        `keep_live` the live state (a conversation going on) wins and nothing is stored now.
        """
        if not prefix or prefix in self._entries:
            if prefix:
                self._entries.move_to_end(prefix)
            return
        llama = self._llama
        live = _common_prefix(llama.input_ids[: llama.n_tokens].tolist(), prefix)
        if keep_live and live == len(prefix) < llama.n_tokens:
            return
        if live == 0:
            llama.reset()
        llama.n_tokens = live  # eval() removes the KV cells from n_tokens on before it decodes
        llama.eval(prefix[live:])
        llama._requires_eval = True  # the logits are not the prefix's own: sample only after an eval
        if self._keep(Snapshot(prefix, _state_bytes(llama))):
            self._saves += 1

    def _keep(self, snapshot: Snapshot) -> bool:
        """Store a snapshot, dropping the least recently used past the cap; False if it is too big."""
        prefix = snapshot.tokens
        if snapshot.size > self.capacity_bytes:
            _LOGGER.warning(
                "A %d-token prompt prefix (%.1f MiB) exceeds the prompt cache (%.1f MiB): not kept",
                len(prefix),
                snapshot.size / 2**20,
                self.capacity_bytes / 2**20,
            )
            return False
        self._entries[prefix] = snapshot
        while self.stats.size_bytes > self.capacity_bytes:
            old, _ = self._entries.popitem(last=False)
            _LOGGER.debug("Prompt cache full: dropped a %d-token prefix", len(old))
            self._heads = OrderedDict((h, p) for h, p in self._heads.items() if p != old)
        _LOGGER.debug("Prompt cache: kept a %d-token prefix (%d KiB)", len(prefix), snapshot.size // 1024)
        return True

    def restore(self, tokens: Sequence[int]) -> int:
        """Load the longest stored prefix of `tokens` if it beats what the model holds; its length or 0."""
        llama = self._llama
        live = _common_prefix(llama.input_ids[: llama.n_tokens].tolist(), tokens)
        matches = [
            snapshot
            for prefix, snapshot in self._entries.items()
            if live < len(prefix) < len(tokens) and tuple(tokens[: len(prefix)]) == prefix
        ]
        if not matches:
            return 0
        best = max(matches, key=lambda snapshot: len(snapshot.tokens))
        self._entries.move_to_end(best.tokens)
        n = len(best.tokens)
        try:
            _load_state(llama, best.data)
        except RuntimeError:
            _LOGGER.warning("Could not restore a cached prompt prefix; evaluating the whole prompt")
            llama.reset()
            return 0
        llama.input_ids[:n] = best.tokens
        llama.n_tokens = n
        llama._requires_eval = True
        self._restores += 1
        return n

    def _real_cache_is_self(self) -> None:
        if self._llama.cache is not self:  # another backend shares the model (tests): take it back
            self._llama.set_cache(self)

    # -- the BaseLlamaCache side that Llama._create_completion uses --------------------------------
    def __bool__(self) -> bool:
        return self._mode is not _Mode.IDLE

    def __getitem__(self, tokens: Sequence[int]) -> Any:
        mode, self._mode = self._mode, _Mode.IDLE
        if mode is _Mode.CAPTURE:
            raise _Captured(list(tokens))
        if mode is _Mode.LOOKUP:
            restored = self.restore(tokens)
            if restored:
                _LOGGER.debug("Prompt cache: %d of %d tokens restored", restored, len(tokens))
        raise KeyError("restored in place")  # llama.cpp loads nothing itself

    def __contains__(self, tokens: Sequence[int]) -> bool:
        return False

    def __setitem__(self, tokens: Sequence[int], state: Any) -> None:
        """Not reached: the cache is falsy once its lookup is done, so no state is saved after a reply."""


def _unwrap(llama: Any) -> Any:
    """The `Llama` itself behind a delegating wrapper (the tests wrap it to watch calls)."""
    return getattr(llama.set_cache, "__self__", llama)


def _chat_completion_handler(chat_format: str) -> Any:
    from llama_cpp import llama_chat_format

    return llama_chat_format.get_chat_completion_handler(chat_format)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _state_bytes(llama: Any) -> bytearray:
    import llama_cpp

    size = llama_cpp.llama_state_get_size(llama.ctx)
    buffer = bytearray(size)
    view = (ctypes.c_uint8 * size).from_buffer(buffer)
    written = llama_cpp.llama_state_get_data(llama.ctx, view, size)
    del view  # a bytearray with a live ctypes view cannot shrink
    if written > size:
        raise RuntimeError("llama_state_get_data overflowed")
    del buffer[written:]
    return buffer


def _load_state(llama: Any, data: bytearray) -> None:
    import llama_cpp

    size = len(data)
    if llama_cpp.llama_state_set_data(llama.ctx, (ctypes.c_uint8 * size).from_buffer(data), size) != size:
        raise RuntimeError("llama_state_set_data failed")
