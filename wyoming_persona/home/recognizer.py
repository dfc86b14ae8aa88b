"""Home commands in a transcript, found with Home Assistant's own sentence templates (hassil).

The templates are the ones HA's built-in agent uses (`home-assistant-intents`), limited to the intents
that act on or ask about the exposed entities. The `{name}` and `{area}` lists are the home's real
names (from HA), so "turn off the kitchen light" resolves exactly and a chat question that merely
mentions a device does not match.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass

from .intents import HOME_INTENTS, RecognizedIntent, Source
from .loose import KIND_WORDS, recognize_loosely
from .model import HomeSnapshot, normalize_name
from .request import Form, Judgement, embedded_question, judge, judge_utterance, split_clauses

_THING = r"(?:the |my |our )?(?P<name>[\w']+(?: [\w']+){0,3}?)"
_ON_OFF = r"(?P<switch>on|off)"


def _on_off(match: re.Match) -> str:
    return "HassTurnOn" if match.group("switch") == "on" else "HassTurnOff"


def _open_close(match: re.Match) -> str:
    return "HassTurnOn" if match.group("verb") == "open" else "HassTurnOff"


_NOT_A_NAME = frozenset(
    {
        "it",
        "them",
        "that",
        "this",
        "those",
        "these",
        "everything",
        "all",
        "something",
        "up",
        "down",
        "in",
        "out",
    }
)
_PRONOUN = re.compile(r"\b(?:it|them)\b", re.IGNORECASE)
_TRAILING = re.compile(
    r"(?:[\s,]+(?:right now|at the moment|currently|now|please|thanks|thank you|for me))+[.!?]*$",
    re.IGNORECASE,
)
"""Words HA's templates do not allow at the end ("which lights are on right now")."""
_PERCENT = re.compile(r"\b(\d{1,3}) ?(?:%|percent\b)")
"""A percentage said with a turn-on: the brightness to turn a light on at."""
_CONNECTIVE = re.compile(r"^(?:so|and then|then)\s+", re.IGNORECASE)
_UNKNOWN_COMMANDS: tuple[tuple[re.Pattern[str], Callable[[re.Match], str]], ...] = (
    (re.compile(rf"^(?:turn|switch) {_ON_OFF} {_THING}(?: now)?$"), _on_off),
    (re.compile(rf"^(?:turn|switch) {_THING} {_ON_OFF}(?: now)?$"), _on_off),
    (re.compile(rf"^(?P<verb>open|close|shut) {_THING}(?: now)?$"), _open_close),
)


@dataclass(frozen=True)
class Candidate:
    """Words to match, with the form of the clause they came from."""

    text: str
    judgement: Judgement
    exact: bool = True
    """False when words were added to the clause: "it" replaced, an area carried over."""


class IntentRecognizer:
    """hassil over HA's English templates, with the home's names as the `{name}` and `{area}` lists."""

    def __init__(self, language: str = "en") -> None:
        from hassil import Intents
        from home_assistant_intents import get_intents

        data = get_intents(language)
        if data is None:
            raise ValueError(f"Home Assistant has no sentence templates for language {language!r}")
        data = {**data, "intents": {k: v for k, v in data["intents"].items() if k in HOME_INTENTS}}
        self._intents = Intents.from_dict(data)
        self._lists_version: int | None = None
        self._known: dict = {}
        skip = "|".join(re.escape(word) for word in sorted(self._intents.skip_words, key=len, reverse=True))
        self._skip = re.compile(rf"\b(?:{skip})\b") if skip else None

    def recognize(self, text: str, home: HomeSnapshot) -> RecognizedIntent | None:
        """The home intent in `text`, or None for anything else. CPU work of a few ms: run it off the loop.

        Only a request may act and only a question may ask for a state (home/request.py judges the
        form of each clause before any device is matched). A command that names no device of the home
        ("turn on the attic fan") comes back with `unknown` set, so the persona can say so instead of
        chatting about it.
        """
        if home.version != self._lists_version:
            self._known, self._lists_version = _home_lists(home), home.version
        found = candidates(text, home)
        for candidate in found:
            if candidate.judgement.form is Form.OTHER:
                continue
            intent = self._best(_TRAILING.sub("", candidate.text), self._known) or recognize_loosely(
                candidate.text, home
            )
            if intent is None or not _allowed(intent, candidate.judgement):
                continue
            intent = _with_brightness(intent, text, home)
            return dataclasses.replace(intent, text=text, exact=intent.exact and candidate.exact)
        for candidate in found:
            if candidate.judgement.acts and (intent := self._unknown_device(candidate.text)) is not None:
                return dataclasses.replace(intent, text=text)
        return None

    def warm(self, home: HomeSnapshot) -> None:
        """hassil compiles the templates on first use: pay that (about 0.1 s) before the first command."""
        self.recognize("turn on the light", home)

    def _unknown_device(self, text: str) -> RecognizedIntent | None:
        """A plain on/off/open/close command whose device is not in the home ("turn on the hallway fan").

        HA's templates cannot say this (with unmatched names they match half of all chat), so a few
        fixed command shapes decide: the whole utterance must be the command.
        """
        words = normalize_name(text)
        if self._skip is not None:
            words = " ".join(self._skip.sub(" ", words).split())
        for pattern, intent in _UNKNOWN_COMMANDS:
            match = pattern.match(words)
            if match is not None and match.group("name") not in _NOT_A_NAME:
                return RecognizedIntent(intent(match), {"name": match.group("name")}, text, unknown=True)
        return None

    def _best(self, text: str, lists: dict) -> RecognizedIntent | None:
        from hassil.recognize import recognize_best

        result = recognize_best(
            text,
            self._intents,
            slot_lists=lists,
            skip_words=self._intents.skip_words,
            language=self._intents.language,
            best_slot_name="name",
        )
        if result is None or result.intent.name not in HOME_INTENTS:
            return None
        slots = {
            name: entity.value
            for name, entity in result.entities.items()
            if isinstance(entity.value, str | int | float) and entity.value != ""
        }
        return RecognizedIntent(result.intent.name, slots, text, source=Source.TEMPLATES)


def candidates(text: str, home: HomeSnapshot) -> list[Candidate]:
    """What to match, in order: the utterance, then each clause from the last: "I'm going to bed, turn
    off the bedroom light" ends in a command. Each carries its form within the utterance. A clause with
    "it" is also tried with the device an earlier clause named ("The bedroom light is on, switch it
    off"), and one that names no area with the area the utterance named ("It's dark in the kitchen,
    can you turn the light on")."""
    parts = split_clauses(text)
    found = [Candidate(text, judge(text) if len(parts) > 1 else judge_utterance(parts or [text], 0))]
    if (asked := embedded_question(text)) is not None:  # "can you check if the door is closed?"
        found.append(Candidate(asked, Judgement(Form.QUESTION, "embedded question"), exact=False))
    if len(parts) < 2:
        return found
    spoken = f" {normalize_name(text)} "
    areas = [area for area in home.areas if f" {normalize_name(area)} " in spoken]
    for index in range(len(parts) - 1, -1, -1):
        judgement = judge_utterance(parts, index)
        part = _CONNECTIVE.sub("", parts[index].rstrip(",;. "))
        found.append(Candidate(part, judgement))
        earlier = _home_phrase(" ".join(parts[:index]), home)
        if earlier and _PRONOUN.search(part):  # "The bedroom light is on, switch it off"
            found.append(Candidate(_PRONOUN.sub(earlier, part), judgement, exact=False))
        said = f" {normalize_name(part)} "
        if len(areas) == 1 and f" {normalize_name(areas[0])} " not in said:
            found.append(Candidate(f"{part} in the {areas[0]}", judgement, exact=False))
    return found


def _with_brightness(intent: RecognizedIntent, text: str, home: HomeSnapshot) -> RecognizedIntent:
    """ "Switch on the bedroom light, but just low, like 10%": the templates hear only the turn-on; the
    percentage the user said is the brightness to turn it on at."""
    said = _PERCENT.search(text)
    entity = home.by_name(str(intent.slots.get("name", "")))
    if intent.name != "HassTurnOn" or said is None or entity is None or entity.domain != "light":
        return intent
    brightness = int(said.group(1))
    if not 0 < brightness <= 100:
        return intent
    return dataclasses.replace(intent, name="HassLightSet", slots={**intent.slots, "brightness": brightness})


def _allowed(intent: RecognizedIntent, judgement: Judgement) -> bool:
    """A question never acts; a state answer needs a question or a request ("tell me", "check")."""
    return intent.is_query or judgement.acts


def _home_phrase(text: str, home: HomeSnapshot) -> str:
    """The longest device name (or area) said in `text`, as said: what a later "it" refers to."""
    spoken = f" {normalize_name(text)} "
    names = [normalize_name(name) for entity in home.entities for name in entity.names]
    names += [normalize_name(area) for area in home.areas]
    said = [name for name in names if f" {name} " in spoken]
    if not said:
        kinds = {word for words in KIND_WORDS.values() for word in words}
        said = [word for word in spoken.split() if word in kinds]
    return max(said, key=len) if said else ""


def _home_lists(home: HomeSnapshot) -> dict:
    from hassil.expression import TextChunk
    from hassil.intents import TextSlotList, TextSlotValue

    values = []
    for entity in home.entities:
        context = {"domain": entity.domain}
        if entity.device_class:
            context["device_class"] = entity.device_class
        for name in entity.names:
            values.append(TextSlotValue(TextChunk(name.lower()), value_out=entity.name, context=context))
    return {**_area_lists(home), "name": TextSlotList(name="name", values=values)}


def _area_lists(home: HomeSnapshot) -> dict:
    from hassil.intents import TextSlotList

    return {
        "area": TextSlotList.from_strings(home.areas, allow_template=False, name="area"),
        "floor": TextSlotList(name="floor", values=[]),
    }
