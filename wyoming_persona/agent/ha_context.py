"""Home Assistant's system message, kept as context after the persona's own prompt.

HA's Ollama integration opens every chat with its instructions: by default three generic lines that
make the model a plain "voice assistant for Home Assistant", then (with the Assist API) the tool
rules, the area and a YAML list of the exposed entities, or else the time and date. The persona
leads, so the generic lines go; everything about the home stays word for word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

GENERIC_LINES = (
    "You are a voice assistant for Home Assistant.",
    "Answer questions about the world truthfully.",
    "Answer in plain text. Keep it simple and to the point.",
)
"""HA's DEFAULT_INSTRUCTIONS_PROMPT (helpers/llm.py), which would override the persona's character."""
HEADING = "About the home you serve (from Home Assistant; keep your own character and way of speaking):"
_BLANK_RUNS = re.compile(r"\n{3,}")
_GENERIC = {" ".join(line.lower().split()) for line in GENERIC_LINES}


def device_context(system_texts: Iterable[str]) -> str:
    """The client's system messages minus HA's generic persona lines, under a heading; "" if nothing
    is left."""
    kept = []
    for text in system_texts:
        lines = [line for line in text.splitlines() if " ".join(line.lower().split()) not in _GENERIC]
        kept.append("\n".join(lines).strip())
    context = _BLANK_RUNS.sub("\n\n", "\n\n".join(part for part in kept if part))
    return f"{HEADING}\n{context}" if context else ""
