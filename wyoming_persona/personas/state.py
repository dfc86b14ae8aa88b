"""The active persona, persisted in a state folder that several processes share."""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

STATE_FILE = "active_persona.json"


@dataclass(frozen=True)
class StoredActive:
    """What the state file says, or why it could not be read."""

    persona_id: str | None
    problem: str | None = None


class ActivePersonaStore:
    """Reads and atomically writes `<state_dir>/active_persona.json`.

    Writers go through a unique temp file and `os.replace`, so concurrent writers never leave a
    half-written file; readers see either the old or the new content.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / STATE_FILE

    def read(self) -> StoredActive:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return StoredActive(None, f"no state file at {self.path}")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            return StoredActive(None, f"corrupt state file {self.path}: {err}")
        persona_id = data.get("active") if isinstance(data, dict) else None
        if not isinstance(persona_id, str) or not persona_id:
            return StoredActive(None, f"state file {self.path} has no 'active' persona id")
        return StoredActive(persona_id)

    def write(self, persona_id: str) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"active": persona_id, "changed_at": time.time()}) + "\n"
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=".active-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
