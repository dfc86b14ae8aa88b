"""The home intents the persona recognises, as Home Assistant's intent handlers name them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

ACTION_INTENTS = frozenset(
    {
        "HassTurnOn",
        "HassTurnOff",
        "HassToggle",
        "HassLightSet",
        "HassSetPosition",
        "HassClimateSetTemperature",
    }
)
QUERY_INTENTS = frozenset({"HassGetState", "HassClimateGetTemperature"})
HOME_INTENTS = ACTION_INTENTS | QUERY_INTENTS


class Source(StrEnum):
    """Which recogniser found the intent: how sure it is."""

    TEMPLATES = "templates"
    """Home Assistant's own sentence templates, on the home's exact names."""
    GRAMMAR = "grammar"
    """The everyday-words grammar (home/loose.py)."""
    MODEL = "model"
    """The LLM's function call (home/model_intents.py)."""


@dataclass(frozen=True)
class RecognizedIntent:
    """An intent and its slots as HA's intent handlers take them ({"name": "Kitchen Light"})."""

    name: str
    slots: dict[str, str | int | float] = field(default_factory=dict)
    text: str = ""
    """The words that matched (for logs)."""
    unknown: bool = False
    """The command names a device the home does not have (its `name` slot is the words heard)."""
    source: Source = Source.TEMPLATES
    exact: bool = True
    """Every word of the thing named it, in the clause itself: no stand-in word ("coffee maker" for the
    Coffee Machine), no "it" from an earlier clause, no area carried over, no toggle's guess of the
    direction. Covers, locks, alarms and climate act only on an exact match (else a question back)."""

    @property
    def is_query(self) -> bool:
        return self.name in QUERY_INTENTS

    @property
    def sure(self) -> bool:
        """Sure enough to act on a door, a lock, an alarm or the heating without asking first."""
        return self.source is Source.TEMPLATES or (self.source is Source.GRAMMAR and self.exact)
