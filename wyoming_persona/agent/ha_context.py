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
CLOSING = "That is all about the home."
"""Ends HA's context, before the persona's identity and way of speaking are said once more: under
HA's long context (about 1,800 tokens with the tools) qwen-1.5b answered plainly, out of character,
with the persona's prompt only at the start."""
_BLANK_RUNS = re.compile(r"\n{3,}")
_LISTED = re.compile(r"^\s*-?\s*(?:names|areas?|domain|floor):\s*(.+)$", re.MULTILINE)
HOME_WORDS = frozenset(
    re.findall(
        r"\w+",
        """light lights lamp lamps switch door doors garage lock locks thermostat heating heat
        temperature fan fans blinds cover covers window windows outlet plug timer alarm on off open
        close time date""",
    )
)
"""Words that make a question about the home even when it names no device of HA's list."""
_GENERIC = {" ".join(line.lower().split()) for line in GENERIC_LINES}


def closing(identity: str, style: Iterable[str], examples: Iterable[tuple[str, str]] = ()) -> str:
    """The lines that end HA's context: who the persona is and how it talks, again, with up to two of
    its example answers as text (as chat turns, with tools offered, a small model copies them and
    stops calling the tools: backends/tool_text.py)."""
    said = [f'Asked "{user}", you say "{answer}"' for user, answer in list(examples)[:2]]
    heard = f"For example: {'; '.join(said)}." if said else ""
    return " ".join(line.strip() for line in (CLOSING, identity, *style, heard) if line.strip())


def mentions_home(question: str, context: str) -> bool:
    """The question names a device, area or domain of HA's static context, or a word of the home."""
    words = set(re.findall(r"[a-z0-9]+", question.lower()))
    if words & HOME_WORDS:
        return True
    for listed in _LISTED.findall(context):
        for name in listed.split(","):
            name_words = re.findall(r"[a-z0-9]+", name.lower())
            if name_words and set(name_words) <= words:
                return True
    return False


def device_context(system_texts: Iterable[str]) -> str:
    """The client's system messages minus HA's generic persona lines, under a heading; "" if nothing
    is left."""
    kept = []
    for text in system_texts:
        lines = [line for line in text.splitlines() if " ".join(line.lower().split()) not in _GENERIC]
        kept.append("\n".join(lines).strip())
    context = _BLANK_RUNS.sub("\n\n", "\n\n".join(part for part in kept if part))
    return f"{HEADING}\n{context}" if context else ""
