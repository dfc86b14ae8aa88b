"""Home commands in character: recognise, check against the home, and answer as the persona.

An action goes back to HA as a Wyoming `intent` event (HA runs it and speaks our text); a state
question or a device the home does not have is answered by the persona itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from ..personas import Persona
from .confirm import CAREFUL_DOMAINS, PendingActions, answer_to_question
from .intents import RecognizedIntent
from .lines import Fact, Outcome, number, spoken_group, spoken_name, spoken_state
from .link import HomeLink
from .model import HomeEntity, HomeSnapshot
from .model_intents import ModelIntents
from .recognizer import IntentRecognizer

_LOGGER = logging.getLogger(__name__)

Phrase = Callable[[Persona, Fact], Awaitable[str | None]]
"""Asks the persona's LLM to say a fact in its own words (None: it could not)."""


@dataclass(frozen=True)
class HomeIntent:
    """What HA is asked to run: an intent name and its slots."""

    name: str
    slots: dict[str, str | int | float] = field(default_factory=dict)


@dataclass(frozen=True)
class HomeReply:
    text: str
    intent: HomeIntent | None = None
    """None: nothing to run (a state answer, an unknown device, a question back)."""


@dataclass(frozen=True)
class _Asked:
    """An action asked back, waiting for the user's yes."""

    fact: Fact
    intent: HomeIntent


class HomeControl:
    """Shared by every connection: the link to HA and the recogniser."""

    def __init__(
        self,
        link: HomeLink,
        recognizer: IntentRecognizer,
        model: ModelIntents | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.link = link
        self.recognizer = recognizer
        self.model = model
        """The LLM, asked only when the templates and the grammar found nothing (None: never)."""
        self.rng = rng or random.Random()
        self.asked: PendingActions[_Asked] = PendingActions()
        """Per conversation, the action a question back waits to hear "yes" to."""

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Follow the home in the background for the duration of the block.

        The link reconnects on any error by itself; should it still end (a bug), it is logged at
        ERROR with the traceback and started again, so home control never stops without a word.
        """
        tasks = [
            asyncio.create_task(self._watched("link to Home Assistant", self.link.run, restart=True)),
            asyncio.create_task(self._watched("warm-up", self._warm, restart=False)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _watched(self, name: str, run: Callable[[], Awaitable[None]], restart: bool) -> None:
        """Run a background task; its error (or, when it should run for good, its end) is an ERROR
        with the traceback, once per kind of failure (DEBUG when it repeats), then it runs again."""
        delay, last = self.link.settings.retry_min, None
        while True:
            try:
                await run()
            except Exception as err:  # the task's boundary: nothing else would see it
                failure: tuple = (type(err), str(err))
                if not restart:
                    _LOGGER.exception("Home control: the %s failed", name)
                    return
                again = failure == last
                (_LOGGER.debug if again else _LOGGER.error)(
                    "Home control: the %s failed; starting it again in %.0f s",
                    name,
                    delay,
                    exc_info=not again,
                )
                last = failure
            else:
                if not restart:
                    return
                _LOGGER.error("Home control: the %s stopped; starting it again in %.0f s", name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.link.settings.retry_max)

    async def _warm(self) -> None:
        """hassil compiles its templates on first use (about 0.1 s): not during the first command."""
        await self.link.connected.wait()
        if self.link.snapshot is not None:
            await asyncio.to_thread(self.recognizer.warm, self.link.snapshot)
            if self.model is not None:
                await self.model.warm(self.link.snapshot)

    async def answer(
        self, text: str, persona: Persona, phrase: Phrase, conversation_id: str = ""
    ) -> HomeReply | None:
        """The persona's answer to a home command or question in `text`; None when it is not one (or
        HA is not connected yet: then the LLM answers as before). A yes or no to the question the
        persona just asked in this conversation ("Shall I close the garage door?") is answered here."""
        asked = self.asked.take(conversation_id) if conversation_id else None
        if asked is not None and (yes := answer_to_question(text)) is not None:
            if yes:
                _LOGGER.debug("Confirmed: %s %s", asked.intent.name, asked.intent.slots)
                return HomeReply(await self._line(asked.fact, persona, phrase), asked.intent)
            declined = Fact(Outcome.DECLINED, asked.fact.name)
            return HomeReply(declined.persona_line(persona, self.rng) or declined.plain())
        home = self.link.snapshot
        if home is None:
            return None
        recognized = await asyncio.to_thread(self.recognizer.recognize, text, home)
        if recognized is None and self.model is not None and self.model.worth_asking(text, home):
            recognized = await self.model.recognize(text, home)
        if recognized is None:
            return None
        _LOGGER.debug(
            "Home intent %s %s%s", recognized.name, recognized.slots, " (unknown)" * recognized.unknown
        )
        fact, intent = plan(recognized, home)
        if fact.outcome is Outcome.STATE and not self.link.connected.is_set():
            return self._unreachable(fact, persona)
        if intent is not None and needs_asking(recognized, home):
            return self._ask(fact, intent, persona, conversation_id)
        return HomeReply(await self._line(fact, persona, phrase), intent)

    async def _line(self, fact: Fact, persona: Persona, phrase: Phrase) -> str:
        return fact.persona_line(persona, self.rng) or await _phrased(phrase, persona, fact)

    def _ask(self, fact: Fact, intent: HomeIntent, persona: Persona, conversation_id: str) -> HomeReply:
        """A guess at a door, a lock, an alarm or the heating: ask first, act on the next "yes"."""
        question = Fact(Outcome.CONFIRM, fact.name, action=spoken_order(fact))
        if conversation_id:
            self.asked.put(conversation_id, _Asked(fact, intent))
        _LOGGER.debug("Not sure enough to %s: asking first", question.action)
        return HomeReply(question.persona_line(persona, self.rng) or question.plain())

    def _unreachable(self, fact: Fact, persona: Persona) -> HomeReply:
        """A state question while the link is down: the snapshot's states are old, so none is spoken.

        (Commands still go to HA by the last names known: HA asked, so HA is up, and it resolves the
        names itself.) The persona's own line, or the plain one: an LLM might invent the state.
        """
        said = Fact(Outcome.UNREACHABLE, fact.name)
        _LOGGER.debug("Home Assistant is not connected: no old state of the %s is spoken", fact.name)
        return HomeReply(said.persona_line(persona, self.rng) or said.plain())


def plan(recognized: RecognizedIntent, home: HomeSnapshot) -> tuple[Fact, HomeIntent | None]:
    """The fact to speak and the intent HA should run, from what was recognised and the home."""
    slots = recognized.slots
    if recognized.unknown:
        return Fact(Outcome.UNKNOWN, str(slots["name"]).lower()), None
    targets = targets_of(slots, home)
    name = _spoken(slots, targets)
    if not targets:
        return Fact(Outcome.UNKNOWN, name), None
    if recognized.is_query:
        if "state" in slots and len(targets) > 1:  # "which lights are on"
            return _which(str(slots["state"]), targets, name), None
        if recognized.name == "HassClimateGetTemperature" and len(targets) != 1:
            name = f"temperature in the {str(slots['area']).lower()}" if "area" in slots else "temperature"
        return Fact(Outcome.STATE, name, state=_states(recognized, targets)), None
    return _action_fact(recognized, targets, name), HomeIntent(recognized.name, _wire_slots(slots, targets))


def needs_asking(recognized: RecognizedIntent, home: HomeSnapshot) -> bool:
    """An action on a door, lock, alarm or the heating that the words did not name for sure: a loose
    guess, or a device class the home does not have ("the garage gate" for the Garage Door)."""
    if recognized.is_query or recognized.unknown:
        return False
    targets = targets_of(recognized.slots, home)
    if not any(entity.domain in CAREFUL_DOMAINS for entity in targets):
        return False
    device_class = recognized.slots.get("device_class")
    guessed_class = device_class is not None and any(e.device_class != device_class for e in targets)
    return guessed_class or not recognized.sure


def spoken_order(fact: Fact) -> str:
    """The action as an order, for the question back: "close the garage door"."""
    verbs = {
        Outcome.OPENED: "open",
        Outcome.CLOSED: "close",
        Outcome.TURNED_ON: "turn on",
        Outcome.TURNED_OFF: "turn off",
    }
    if fact.outcome in verbs:
        return f"{verbs[fact.outcome]} the {fact.name}"
    return f"set the {fact.name} to {fact.value}"


def targets_of(slots: dict, home: HomeSnapshot) -> tuple[HomeEntity, ...]:
    """The entities a command acts on, as HA would match them."""
    if "name" in slots:
        entity = home.by_name(str(slots["name"]))
        return (entity,) if entity is not None else ()
    area, domain, device_class = slots.get("area"), slots.get("domain"), slots.get("device_class")
    found = home.select(area, domain, device_class)
    if (
        not found and device_class
    ):  # "the garage door" heard as area Garage + class door: HA's class is garage
        found = home.select(area, domain)
    return found


def _wire_slots(slots: dict, targets: tuple[HomeEntity, ...]) -> dict:
    """One target goes by its exact name; several by area and domain (as HA's own agent sends them)."""
    values = {
        key: value for key, value in slots.items() if key not in ("name", "area", "domain", "device_class")
    }
    if len(targets) == 1:
        return {"name": targets[0].name, **values}
    group = {key: slots[key] for key in ("area", "domain") if key in slots}
    classes = {entity.device_class for entity in targets}
    if "device_class" in slots and classes == {slots["device_class"]}:
        group["device_class"] = slots["device_class"]
    return {**group, **values}


def _spoken(slots: dict, targets: tuple[HomeEntity, ...]) -> str:
    if len(targets) == 1:
        return spoken_name(targets[0])
    if "name" in slots:
        return str(slots["name"]).lower()
    return spoken_group(slots.get("area"), slots.get("domain"))


def _action_fact(recognized: RecognizedIntent, targets: tuple[HomeEntity, ...], name: str) -> Fact:
    slots = recognized.slots
    covers = all(entity.domain == "cover" for entity in targets)
    match recognized.name:
        case "HassTurnOn":
            return Fact(Outcome.OPENED if covers else Outcome.TURNED_ON, name)
        case "HassTurnOff":
            return Fact(Outcome.CLOSED if covers else Outcome.TURNED_OFF, name)
        case "HassClimateSetTemperature":
            return Fact(Outcome.SET, name, value=f"{number(slots.get('temperature', ''))} degrees")
        case "HassLightSet" if "brightness" in slots:
            return Fact(Outcome.SET, name, value=f"{number(slots['brightness'])} percent")
        case "HassSetPosition" if "position" in slots:
            return Fact(Outcome.SET, name, value=f"{number(slots['position'])} percent")
        case _:  # HassToggle, a colour: nothing more precise to say
            return Fact(Outcome.SET, name, value="what you asked")


def _which(state: str, targets: tuple[HomeEntity, ...], group: str) -> Fact:
    """ "Which lights are on": the devices in that state, by name (or none)."""
    matching = [
        spoken_name(e) for e in targets if e.state == state or (state == "closed" and e.state == "off")
    ]
    names = " and ".join(f"the {name}" for name in matching) if matching else "none of them"
    return Fact(Outcome.STATE, f"{group} that are {state}", state=names)


def _states(recognized: RecognizedIntent, targets: tuple[HomeEntity, ...]) -> str:
    if recognized.name == "HassClimateGetTemperature":
        temperatures = [e.attributes.get("current_temperature") for e in targets if e.domain == "climate"]
        known = [t for t in temperatures if t is not None]
        if known:
            return f"{number(known[0])} degrees"
    if len(targets) == 1:
        return spoken_state(targets[0])
    return ", ".join(f"{spoken_name(e)} {spoken_state(e)}" for e in targets[:4])


async def _phrased(phrase: Phrase, persona: Persona, fact: Fact) -> str:
    """The LLM's line if it keeps the fact (names the device, and the value or state); else the plain one."""
    line = await phrase(persona, fact)
    if line and _keeps(line, fact):
        return line
    if line:
        _LOGGER.debug("The phrased home line %r lost the fact; saying %r", line, fact.plain())
    return fact.plain()


def _keeps(line: str, fact: Fact) -> bool:
    lowered = line.lower()
    key_words = [w for w in fact.name.split() if len(w) > 2][-1:]  # "light" of "kitchen light"
    numbers = [w for w in f"{fact.value} {fact.state}".split() if any(c.isdigit() for c in w)]
    return all(w in lowered for w in key_words) and all(n in lowered for n in numbers)
