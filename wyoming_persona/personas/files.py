"""Writing persona files for the studio: atomic, never over a file that changed meanwhile.

A save goes through a temporary file in the same folder (its name does not end in .yaml, so the
watchers never read it half-written) and `os.replace`; a new persona is linked into place, which
fails if the name is taken, so two creations never overwrite each other. Readers (every service's
watcher) see either the old or the new file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .loader import MAX_FILE_BYTES, PERSONA_ID, PERSONA_SUFFIXES


class PersonaFileError(Exception):
    """A write that must not happen; `kind` says why (`exists`, `changed`, `missing`, `bad-id`)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class PersonaText:
    text: str
    version: str
    """The sha256 of the file's bytes: a save names the version it started from."""
    path: Path


def version_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


class PersonaFiles:
    """The persona files of one folder, by persona id."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, persona_id: str) -> Path:
        """The file of `persona_id`: the existing one (.yaml or .yml), else a new .yaml."""
        check_id(persona_id)
        for suffix in PERSONA_SUFFIXES:
            candidate = self.folder / f"{persona_id}{suffix}"
            if candidate.is_file():
                return candidate
        return self.folder / f"{persona_id}.yaml"

    def exists(self, persona_id: str) -> bool:
        return any((self.folder / f"{persona_id}{suffix}").exists() for suffix in PERSONA_SUFFIXES)

    def read(self, persona_id: str) -> PersonaText:
        path = self.path(persona_id)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise PersonaFileError(
                "missing", f"no file for persona {persona_id!r} in {self.folder}"
            ) from None
        return PersonaText(raw.decode("utf-8", errors="replace"), version_of(raw), path)

    def create(self, persona_id: str, text: str) -> PersonaText:
        """Write a new persona file; PersonaFileError('exists') if the id is taken."""
        if self.exists(persona_id):
            raise PersonaFileError("exists", f"a persona with id {persona_id!r} already exists")
        path = self.folder / f"{persona_id}.yaml"
        raw = text.encode("utf-8")
        tmp = self._temp(raw)
        try:
            os.link(tmp, path)  # fails if the name was taken meanwhile: never overwrites
        except FileExistsError:
            raise PersonaFileError("exists", f"a persona with id {persona_id!r} already exists") from None
        finally:
            tmp.unlink(missing_ok=True)
        return PersonaText(text, version_of(raw), path)

    def replace(self, persona_id: str, text: str, version: str) -> PersonaText:
        """Overwrite a persona file, if it still is the `version` the edit started from."""
        current = self.read(persona_id)
        if current.version != version:
            raise PersonaFileError(
                "changed", f"{current.path.name} changed on disk since it was opened; reload it first"
            )
        raw = text.encode("utf-8")
        tmp = self._temp(raw)
        try:
            os.replace(tmp, current.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return PersonaText(text, version_of(raw), current.path)

    def delete(self, persona_id: str, version: str | None = None) -> Path:
        current = self.read(persona_id)
        if version is not None and current.version != version:
            raise PersonaFileError(
                "changed", f"{current.path.name} changed on disk since it was opened; reload it first"
            )
        current.path.unlink()
        return current.path

    def _temp(self, raw: bytes) -> Path:
        if len(raw) > MAX_FILE_BYTES:
            raise PersonaFileError(
                "too-large", f"the file would be {len(raw)} bytes; at most {MAX_FILE_BYTES}"
            )
        fd, name = tempfile.mkstemp(dir=self.folder, prefix=".studio-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(raw)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        os.chmod(name, 0o644)  # mkstemp's 0600 would hide the file from the other add-ons' users
        return Path(name)


MAX_ID_CHARS = 64


def check_id(persona_id: str) -> str:
    if len(persona_id) > MAX_ID_CHARS:
        raise PersonaFileError("bad-id", f"id is {len(persona_id)} characters; at most {MAX_ID_CHARS}")
    if not PERSONA_ID.fullmatch(persona_id):
        raise PersonaFileError(
            "bad-id",
            f"id {persona_id!r} must start with a lowercase letter or digit, then lowercase letters, "
            "digits, _ or -",
        )
    return persona_id
