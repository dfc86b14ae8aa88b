"""What the persona says about the home: the fact in plain words, and the persona's own line for it."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from enum import StrEnum

from ..personas import Persona
from .model import HomeEntity

_LOGGER = logging.getLogger(__name__)

_PLURALS = {
    "light": "lights",
    "switch": "switches",
    "cover": "covers",
    "fan": "fans",
    "climate": "thermostats",
}
_UNITS = {"°C": "degrees", "°F": "degrees", "%": "percent"}


class Outcome(StrEnum):
    """The kinds of home replies; each is a field of the persona's `home:` lines."""

    TURNED_ON = "turned_on"
    TURNED_OFF = "turned_off"
    OPENED = "opened"
    CLOSED = "closed"
    SET = "set"
    STATE = "state"
    UNKNOWN = "unknown"
    UNREACHABLE = "unreachable"
    """A state question while Home Assistant cannot be reached: the last states known are old."""
    CONFIRM = "confirm"
    """A question back before a risky guess: "Shall I close the garage door?" (home/confirm.py)."""
    DECLINED = "declined"
    """The user said no to that question: nothing was done."""


_PLAIN = {
    Outcome.TURNED_ON: "on now",
    Outcome.TURNED_OFF: "off now",
    Outcome.OPENED: "opening",
    Outcome.CLOSED: "closing",
    Outcome.SET: "set to {value}",
    Outcome.STATE: "{state}",
}
_FALLBACK_KIND = {Outcome.OPENED: Outcome.TURNED_ON, Outcome.CLOSED: Outcome.TURNED_OFF}


@dataclass(frozen=True)
class Fact:
    """What happened (or is), in words a sentence can carry."""

    outcome: Outcome
    name: str
    """The device as spoken: "kitchen light", "living room lights"."""
    value: str = ""
    state: str = ""
    action: str = ""
    """What would be done, as an order: "close the garage door" (for CONFIRM)."""

    def plain(self) -> str:
        """The fact as one neutral sentence (also the line when the persona has none and no LLM answers)."""
        if self.outcome is Outcome.UNKNOWN:
            return f"I can't find anything called the {self.name} in this home."
        if self.outcome is Outcome.UNREACHABLE:
            return f"I can't reach Home Assistant right now, so I can't check the {self.name}."
        if self.outcome is Outcome.CONFIRM:
            return f"Shall I {self.action}?"
        if self.outcome is Outcome.DECLINED:
            return f"Alright, I'll leave the {self.name} as it is."
        tail = _PLAIN[self.outcome].format(value=self.value, state=self.state)
        return f"The {self.name} {_be(self.name)} {tail}."

    def persona_line(self, persona: Persona, rng: random.Random) -> str | None:
        """One of the persona's own lines for this kind, filled in; None if it has none."""
        lines = getattr(persona.spec.home, self.outcome.value)
        if not lines and self.outcome in _FALLBACK_KIND:
            lines = getattr(persona.spec.home, _FALLBACK_KIND[self.outcome].value)
        if not lines:
            return None
        line = rng.choice(lines)
        try:
            return line.format(
                name=self.name, value=self.value, state=self.state or self.value, action=self.action
            )
        except (KeyError, IndexError, ValueError) as err:
            _LOGGER.warning(
                "%s: home line %r has a placeholder it cannot fill (%s)", persona.source, line, err
            )
            return None


def spoken_name(entity: HomeEntity) -> str:
    return entity.name.lower()


def spoken_group(area: str | None, domain: str | None) -> str:
    """ "living room lights", "lights", "kitchen devices"."""
    things = _PLURALS.get(domain or "", "devices")
    return f"{area.lower()} {things}" if area else things


def spoken_state(entity: HomeEntity) -> str:
    """The entity's state as words: "on", "open", "12.5 degrees", "heating to 21 degrees"."""
    state, attributes = entity.state, entity.attributes
    if state in ("unavailable", "unknown"):
        return state
    if entity.domain == "light" and state == "on" and attributes.get("brightness") is not None:
        return f"on at {round(int(attributes['brightness']) * 100 / 255)} percent"
    if (
        entity.domain == "cover"
        and attributes.get("current_position") not in (None, 0, 100)
        and state == "open"
    ):
        return f"open at {attributes['current_position']} percent"
    if entity.domain == "climate":
        target, current = attributes.get("temperature"), attributes.get("current_temperature")
        if target is None:
            return state
        words = "off" if state == "off" else f"set to {number(target)} degrees"  # "is the heating on?"
        return f"{words}, and it is {number(current)} degrees now" if current is not None else words
    try:
        value = float(state)
    except ValueError:
        return state.replace("_", " ")
    unit = _UNITS.get(entity.unit or "", entity.unit or "")
    return f"{number(value)} {unit}".strip()


def number(value: float | int | str) -> str:
    """21.0 -> "21", 12.5 -> "12.5"."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _be(name: str) -> str:
    plural = name.endswith("s") and not name.endswith("ss")
    return "are" if plural or " that are " in name else "is"
