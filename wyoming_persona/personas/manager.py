"""The persona manager: an immutable snapshot of the personas folder plus the shared active persona.

Reading (`snapshot`, `personas`, `get`, `active`) never touches the disk: request handlers run on the
event loop. The files are polled by `refresh()`, which services call from a background task
(`watching()`, in a worker thread) and one-shot tools get once at construction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from .loader import PersonaError, PersonaLoadError, load_folder, persona_files
from .model import Persona
from .state import ActivePersonaStore, StoredActive

_LOGGER = logging.getLogger(__name__)

DEFAULT_PERSONA = "assistant"
DEFAULT_INTERVAL = 0.5
MIN_INTERVAL = 0.05
"""The watcher never polls faster than this, whatever `refresh_interval` says (0 would spin)."""

Fingerprint = tuple[tuple[str, int, int], ...]
StatePrint = tuple[int, int, int, int] | None
_UNKNOWN_STATE: StatePrint = (-1, -1, -1, -1)
"""Matches no file: makes the next refresh read the state file again."""


class UnknownPersonaError(LookupError):
    """A persona id that is not in the current snapshot."""

    def __init__(self, persona_id: str, known: list[str]) -> None:
        super().__init__(f"unknown persona {persona_id!r}; known personas: {', '.join(known)}")
        self.persona_id = persona_id
        self.known = known


@dataclass(frozen=True)
class PersonaSnapshot:
    """One consistent view of the personas folder."""

    personas: Mapping[str, Persona]
    fingerprint: Fingerprint
    loaded_at: float = field(default_factory=time.time)

    def ids(self) -> list[str]:
        return list(self.personas)


@dataclass(frozen=True)
class ReloadResult:
    changed: bool
    errors: tuple[PersonaError, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class _View:
    """What readers see, swapped as one object so a snapshot and its active persona always agree."""

    snapshot: PersonaSnapshot
    active: Persona
    stored: StoredActive
    state_print: StatePrint


class PersonaManager:
    """Owns the snapshot (reloaded atomically, hot-reloaded on file change) and the active persona.

    A folder with errors never replaces the last good snapshot, and is parsed again only when its
    files change. The active persona lives in the state folder so that every process pointed at it
    agrees; it is cached by the state file's stat, so a switch by another process shows up on the
    next refresh.
    """

    def __init__(
        self,
        personas_dir: Path,
        state_dir: Path,
        default_persona: str = DEFAULT_PERSONA,
        refresh_interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self.personas_dir = Path(personas_dir)
        self.store = ActivePersonaStore(state_dir)
        self.default_persona = default_persona
        self.refresh_interval = refresh_interval
        """Seconds between two polls of the background watcher."""
        self._lock = threading.Lock()
        self._last_errors: tuple[PersonaError, ...] = ()
        self._failed: Fingerprint | None = None
        self._warned: str | None = None
        self._watchers = 0
        self._watch_task: asyncio.Task | None = None
        snapshot = self._load()  # raises PersonaLoadError: nothing to serve without personas
        self._view = self._resolve(snapshot, *self._read_state(None, None))

    # -- reading (memory only) ------------------------------------------------------------------
    @property
    def snapshot(self) -> PersonaSnapshot:
        """The current snapshot, as of the last refresh."""
        return self._view.snapshot

    @property
    def last_errors(self) -> tuple[PersonaError, ...]:
        """Errors of the last failed reload (empty once a reload succeeds)."""
        return self._last_errors

    @property
    def personas(self) -> Mapping[str, Persona]:
        return self._view.snapshot.personas

    def get(self, persona_id: str) -> Persona:
        personas = self._view.snapshot.personas
        try:
            return personas[persona_id]
        except KeyError:
            raise UnknownPersonaError(persona_id, list(personas)) from None

    async def lookup(self, persona_id: str) -> Persona:
        """`get` for a request: a persona made a moment ago by another process (the studio saves, then
        chats with it) is looked for on disk before it is called unknown."""
        if persona_id not in self._view.snapshot.personas:
            await asyncio.to_thread(self.refresh)
        return self.get(persona_id)

    def active(self) -> Persona:
        """The persona every service should speak as right now (the shared state, as of the last refresh)."""
        return self._view.active

    # -- file I/O: call from a worker thread or a one-shot tool, never on the event loop ----------
    def refresh(self) -> ReloadResult:
        """Reload if a persona file was added, removed or modified; re-read a changed state file."""
        with self._lock:
            fingerprint = self._fingerprint()
            if fingerprint == self._view.snapshot.fingerprint:  # e.g. a broken new file was removed
                self._failed, self._last_errors = None, ()
                result = ReloadResult(changed=False)
            elif fingerprint == self._failed:
                result = ReloadResult(changed=False, errors=self._last_errors)
            else:
                result = self._reload_locked(fingerprint)
            self._refresh_state_locked()
            return result

    def refresh_state(self) -> Persona:
        """Re-read the shared active persona if the state file changed (one stat otherwise)."""
        with self._lock:
            self._refresh_state_locked()
            return self._view.active

    async def current(self) -> Persona:
        """The active persona as of now, for a request: a switch another process wrote a moment ago
        (`talk --persona`, the API beside the agent) applies to this very request."""
        return await asyncio.to_thread(self.refresh_state)

    def _refresh_state_locked(self) -> None:
        view = self._view
        stored, state_print = self._read_state(view.stored, view.state_print)
        if stored != view.stored:
            if stored.persona_id is not None and stored.persona_id not in view.snapshot.personas:
                # Made a moment ago by another process (the studio saves, then switches): look at
                # the folder now rather than fall back until the watcher's next poll.
                fingerprint = self._fingerprint()
                if fingerprint not in (view.snapshot.fingerprint, self._failed):
                    self._reload_locked(fingerprint)
                    view = self._view
            self._view = self._resolve(view.snapshot, stored, state_print)
        elif state_print != view.state_print:
            self._view = _View(view.snapshot, view.active, stored, state_print)

    def reload(self) -> ReloadResult:
        """Load the folder again and swap the snapshot atomically; on errors keep the old one."""
        with self._lock:
            return self._reload_locked(self._fingerprint())

    def set_active(self, persona_id: str) -> Persona:
        with self._lock:
            persona = self.get(persona_id)
            self.store.write(persona.id)
            # Another process may write right after us: leave the stat unknown so the next
            # refresh reads the file again rather than trusting this write to be the last.
            self._view = self._resolve(self._view.snapshot, StoredActive(persona.id), _UNKNOWN_STATE)
        _LOGGER.info("Active persona is now %r", persona.id)
        return persona

    def _reload_locked(self, fingerprint: Fingerprint) -> ReloadResult:
        try:
            personas = load_folder(self.personas_dir)
        except PersonaLoadError as err:
            errors = tuple(err.errors)
            if self._last_errors != errors:
                _LOGGER.warning(
                    "Personas in %s have errors; keeping the last good set:\n%s", self.personas_dir, err
                )
            self._last_errors = errors
            self._failed = fingerprint
            return ReloadResult(changed=False, errors=errors)
        view = self._view
        snapshot = PersonaSnapshot(MappingProxyType(personas), fingerprint)
        changed = snapshot.personas != view.snapshot.personas
        self._view = self._resolve(snapshot, view.stored, view.state_print)
        self._last_errors = ()
        self._failed = None
        if changed:
            _LOGGER.info("Loaded %d personas: %s", len(snapshot.personas), snapshot.ids())
        return ReloadResult(changed=changed)

    def _fingerprint(self) -> Fingerprint:
        try:
            files = persona_files(self.personas_dir)
        except OSError:
            return ()
        prints = []
        for path in files:
            try:
                st = path.stat()
            except OSError:
                continue
            prints.append((path.name, st.st_mtime_ns, st.st_size))
        return tuple(prints)

    def _load(self) -> PersonaSnapshot:
        fingerprint = self._fingerprint()  # before loading: an edit made meanwhile is seen next time
        personas = load_folder(self.personas_dir)
        return PersonaSnapshot(MappingProxyType(personas), fingerprint)

    def _read_state(
        self, stored: StoredActive | None, state_print: StatePrint
    ) -> tuple[StoredActive, StatePrint]:
        """The state file's content, read again only when its stat changed (writers replace it)."""
        try:
            st = os.stat(self.store.path)
            current: StatePrint = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
        except OSError:
            current = None
        if stored is not None and current == state_print:
            return stored, state_print
        return self.store.read(), current

    def _resolve(self, snapshot: PersonaSnapshot, stored: StoredActive, state_print: StatePrint) -> _View:
        """The view with the stored persona, or the default one (warned once per problem)."""
        personas = snapshot.personas
        problem = stored.problem
        if stored.persona_id is not None:
            persona = personas.get(stored.persona_id)
            if persona is not None:
                self._warned = None
                return _View(snapshot, persona, stored, state_print)
            problem = f"active persona {stored.persona_id!r} is not in {self.personas_dir}"
        fallback = self._default(personas)
        if problem != self._warned:
            _LOGGER.warning("%s; using the default persona %r", problem, fallback.id)
            self._warned = problem
        return _View(snapshot, fallback, stored, state_print)

    def _default(self, personas: Mapping[str, Persona]) -> Persona:
        """The configured default persona, or the first one when the default is not in the folder."""
        return personas.get(self.default_persona) or next(iter(personas.values()))

    # -- background watcher -----------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """Keep the snapshot and the active persona current while inside (every `refresh_interval`).

        The files are polled in a worker thread, so handlers on the event loop only read memory.
        Nested and concurrent users share one polling task.
        """
        self._watchers += 1
        if self._watch_task is None:
            self._watch_task = asyncio.create_task(self._poll(), name="persona-watcher")
        try:
            yield
        finally:
            self._watchers -= 1
            if self._watchers == 0 and self._watch_task is not None:
                task, self._watch_task = self._watch_task, None
                task.cancel()
                await asyncio.wait({task})  # unlike `await task`, never mistakes its cancel for ours

    async def _poll(self) -> None:
        interval = max(self.refresh_interval, MIN_INTERVAL)
        while True:
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:  # the watcher's boundary: one failed poll must not end hot reload
                _LOGGER.exception("Polling %s failed; trying again", self.personas_dir)
            await asyncio.sleep(interval)

    async def watch(
        self, interval: float = DEFAULT_INTERVAL
    ) -> AsyncIterator[tuple[PersonaSnapshot, Persona]]:
        """Yield (snapshot, active persona) now and whenever either changes; runs the watcher meanwhile."""
        last: _View | None = None
        async with self.watching():
            while True:
                view = self._view
                if last is None or view.snapshot is not last.snapshot or view.active != last.active:
                    last = view
                    yield view.snapshot, view.active
                await asyncio.sleep(interval)
