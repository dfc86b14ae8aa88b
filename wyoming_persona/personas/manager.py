"""The persona manager: an immutable snapshot of the personas folder plus the shared active persona."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from .loader import PersonaError, PersonaLoadError, load_folder, persona_files
from .model import Persona
from .state import ActivePersonaStore

_LOGGER = logging.getLogger(__name__)

DEFAULT_PERSONA = "assistant"
Fingerprint = tuple[tuple[str, int, int], ...]


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


class PersonaManager:
    """Owns the snapshot (reloaded atomically, hot-reloaded on file change) and the active persona.

    A folder with errors never replaces the last good snapshot. The active persona lives in the
    state folder so that every process pointed at it agrees.
    """

    def __init__(
        self,
        personas_dir: Path,
        state_dir: Path,
        default_persona: str = DEFAULT_PERSONA,
        refresh_interval: float = 0.5,
    ) -> None:
        self.personas_dir = Path(personas_dir)
        self.store = ActivePersonaStore(state_dir)
        self.default_persona = default_persona
        self.refresh_interval = refresh_interval
        self._lock = threading.Lock()
        self._last_check = time.monotonic()
        self._last_errors: tuple[PersonaError, ...] = ()
        self._warned: str | None = None
        self._snapshot = self._load()  # raises PersonaLoadError: nothing to serve without personas

    # -- snapshot -------------------------------------------------------------------------------
    @property
    def snapshot(self) -> PersonaSnapshot:
        """The current snapshot, after picking up edited files (checked at most every interval)."""
        if time.monotonic() - self._last_check >= self.refresh_interval:
            self.refresh()
        return self._snapshot

    @property
    def last_errors(self) -> tuple[PersonaError, ...]:
        """Errors of the last failed reload (empty once a reload succeeds)."""
        return self._last_errors

    def refresh(self) -> ReloadResult:
        """Reload if any persona file was added, removed or modified since the last load."""
        self._last_check = time.monotonic()
        if self._fingerprint() == self._snapshot.fingerprint:
            return ReloadResult(changed=False)
        return self.reload()

    def reload(self) -> ReloadResult:
        """Load the folder again and swap the snapshot atomically; on errors keep the old one."""
        with self._lock:
            self._last_check = time.monotonic()
            try:
                snapshot = self._load()
            except PersonaLoadError as err:
                if self._last_errors != tuple(err.errors):
                    _LOGGER.warning(
                        "Personas in %s have errors; keeping the last good set:\n%s",
                        self.personas_dir,
                        err,
                    )
                self._last_errors = tuple(err.errors)
                return ReloadResult(changed=False, errors=tuple(err.errors))
            changed = snapshot.personas != self._snapshot.personas
            self._snapshot = snapshot
            self._last_errors = ()
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
        fingerprint = self._fingerprint()
        personas = load_folder(self.personas_dir)
        return PersonaSnapshot(MappingProxyType(personas), fingerprint)

    # -- lookup ---------------------------------------------------------------------------------
    @property
    def personas(self) -> Mapping[str, Persona]:
        return self.snapshot.personas

    def get(self, persona_id: str) -> Persona:
        personas = self.snapshot.personas
        try:
            return personas[persona_id]
        except KeyError:
            raise UnknownPersonaError(persona_id, list(personas)) from None

    # -- active persona -------------------------------------------------------------------------
    def active(self) -> Persona:
        """The persona every service should speak as right now (read from the shared state)."""
        personas = self.snapshot.personas
        stored = self.store.read()
        problem = stored.problem
        if stored.persona_id is not None:
            persona = personas.get(stored.persona_id)
            if persona is not None:
                self._warned = None
                return persona
            problem = f"active persona {stored.persona_id!r} is not in {self.personas_dir}"
        fallback = self._default(personas)
        if problem != self._warned:
            _LOGGER.warning("%s; using the default persona %r", problem, fallback.id)
            self._warned = problem
        return fallback

    def set_active(self, persona_id: str) -> Persona:
        persona = self.get(persona_id)
        self.store.write(persona.id)
        _LOGGER.info("Active persona is now %r", persona.id)
        return persona

    def _default(self, personas: Mapping[str, Persona]) -> Persona:
        """The configured default persona, or the first one when the default is not in the folder."""
        return personas.get(self.default_persona) or next(iter(personas.values()))

    async def watch(self, interval: float = 0.5) -> AsyncIterator[tuple[PersonaSnapshot, Persona]]:
        """Yield (snapshot, active persona) now and whenever either changes (polled)."""
        last: tuple[PersonaSnapshot, Persona] | None = None
        while True:
            current = (self.snapshot, self.active())
            if last is None or current[0] is not last[0] or current[1] != last[1]:
                last = current
                yield current
            await asyncio.sleep(interval)
