"""Persona voice commands, recognised locally without the LLM.

The grammar is deliberately small and anchored to the whole utterance, so ordinary requests
("can you switch on the light", "change the temperature to twenty") never read as commands.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from ..personas import Persona

_POLITE = r"(?:(?:hey|ok|okay|please|now|so|and|alright|all right)\s+)*"
_PERSONA_WORD = r"(?:persona|personality|character|voice|mode)"
_NAME = r"(?P<name>[\w' .-]{1,60}?)"
_ASK = r"(?:let me|can i|could i|may i|i want to|i'd like to|i would like to)"
_TAIL = r"(?:\s+(?:please|now|instead|again|for a (?:while|bit)))*"

# Strong forms always mean a persona switch; an unknown name gets the list of personas.
_STRONG = [
    rf"(?:switch|change|set)\s+(?:your\s+|the\s+)?{_PERSONA_WORD}\s+to\s+{_NAME}",
    rf"(?:switch|change)\s+(?:over\s+|back\s+)?to\s+(?:the\s+)?{_NAME}\s+{_PERSONA_WORD}",
    rf"(?:use|become|be)\s+(?:the\s+)?{_NAME}\s+{_PERSONA_WORD}",
    rf"talk\s+like\s+{_NAME}",
    rf"{_ASK}\s+(?:talk|speak)\s+(?:to|with)\s+{_NAME}",
    rf"put\s+me\s+through\s+to\s+{_NAME}",
]
# Weak forms are only commands when the name really is one of the personas.
_WEAK = [
    rf"(?:switch|change)\s+(?:over\s+|back\s+)?to\s+{_NAME}",
    rf"(?:become|act like|sound like)\s+{_NAME}",
]
_WHO = [
    r"who\s+(?:are|r)\s+you",
    r"who\s+am\s+i\s+(?:talking|speaking)\s+(?:to|with)",
    r"who\s+is\s+(?:this|speaking|talking)",
    r"what(?:\s+is|'s)\s+your\s+name",
    r"which\s+(?:persona|character|personality)\s+(?:are\s+you|is\s+this|is\s+active)",
]
_PLURAL = r"(?:personas|personalities|characters|voices|people)"
_LIST = [
    rf"(?:which|what)\s+(?:other\s+)?{_PLURAL}\s+(?:do\s+you\s+have|can\s+you\s+(?:be|do|use)|are\s+(?:there|available)|do\s+you\s+know)",
    rf"(?:list|name|tell\s+me)\s+(?:all\s+)?(?:the\s+|your\s+|of\s+your\s+)?(?:available\s+)?{_PLURAL}",
    r"who\s+else\s+can\s+you\s+be",
    r"who\s+(?:else\s+)?can\s+i\s+(?:talk|speak)\s+(?:to|with)",
]

_ARTICLES = {"the", "a", "an", "my", "our", "your", "mister", "mr", "miss", "ms"}
_FUZZY_CUTOFF = 0.8


def _compile(patterns: list[str]) -> list[re.Pattern[str]]:
    return [re.compile(rf"^{_POLITE}{p}{_TAIL}$") for p in patterns]


_STRONG_RE = _compile(_STRONG)
_WEAK_RE = _compile(_WEAK)
_WHO_RE = _compile(_WHO)
_LIST_RE = _compile(_LIST)


class CommandKind(StrEnum):
    SWITCH = "switch"
    UNKNOWN_PERSONA = "unknown-persona"
    WHO_AM_I = "who-am-i"
    LIST = "list"


@dataclass(frozen=True)
class Command:
    kind: CommandKind
    persona_id: str | None = None
    spoken_name: str | None = None


def normalize(text: str) -> str:
    """Lower case, accents and punctuation removed (apostrophes kept), single spaces."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = text.replace("’", "'")
    text = re.sub(r"[^\w' ]+", " ", text)
    return " ".join(text.split())


def _strip_articles(name: str) -> str:
    words = name.split()
    while words and words[0] in _ARTICLES:
        words = words[1:]
    return " ".join(words)


def match_persona(spoken: str, personas: Iterable[Persona]) -> str | None:
    """The id of the persona whose name, id or alias best matches `spoken`, or None."""
    wanted = _strip_articles(normalize(spoken))
    if not wanted:
        return None
    candidates: dict[str, str] = {}
    for persona in personas:
        for label in (persona.name, persona.id.replace("_", " ").replace("-", " "), *persona.spec.aliases):
            key = _strip_articles(normalize(label))
            if key:
                candidates.setdefault(key, persona.id)
    if wanted in candidates:
        return candidates[wanted]
    close = difflib.get_close_matches(wanted, list(candidates), n=1, cutoff=_FUZZY_CUTOFF)
    return candidates[close[0]] if close else None


def recognize(text: str, personas: Iterable[Persona]) -> Command | None:
    """A persona command in `text`, or None if it is an ordinary request for the LLM."""
    utterance = normalize(text)
    if not utterance:
        return None
    personas = list(personas)
    if any(p.match(utterance) for p in _WHO_RE):
        return Command(CommandKind.WHO_AM_I)
    if any(p.match(utterance) for p in _LIST_RE):
        return Command(CommandKind.LIST)
    for patterns, strong in ((_STRONG_RE, True), (_WEAK_RE, False)):
        for pattern in patterns:
            match = pattern.match(utterance)
            if match is None:
                continue
            name = match.group("name").strip()
            persona_id = match_persona(name, personas)
            if persona_id is not None:
                return Command(CommandKind.SWITCH, persona_id, name)
            if strong:
                return Command(CommandKind.UNKNOWN_PERSONA, None, name)
    return None


def pinned_reply(command: Command | None, persona: Persona) -> str | None:
    """What an agent pinned to `persona` says instead of obeying a persona switch, or None when
    `command` is not a switch.

    A pinned agent (a `--pinned-persona` Wyoming endpoint, a persona model of the Ollama-compatible
    API, the studio's chat) is one persona for good: a switch through it would change the persona of
    every other agent and satellite while this one kept answering as before.
    """
    if command is None or command.kind is not CommandKind.SWITCH:
        return None
    return f"This agent always answers as {persona.name}."


def spoken_list(names: list[str], conjunction: str = "or") -> str:
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} {conjunction} {names[-1]}"
