"""A second chance for home commands HA's templates miss: everyday words for a device and its setting.

HA's templates want the device's exact name and a fixed verb: "dim the living room lamp", "turn the
heat up to 23", "turn off the coffee maker" (for the Coffee Machine), "close the garage" or "what's
the temperature outside" do not match. Here a small grammar of command shapes takes the words for the
thing and resolves them against the home, loosely: every word must be part of a device's name, its
area, or a word for its kind ("lamp" for a light, "heat" for the thermostat). The whole utterance must
fit a shape, so a question that merely mentions a device ("how does a thermostat work") stays chat.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .intents import RecognizedIntent, Source
from .model import HomeEntity, HomeSnapshot, normalize_name

STEP_PERCENT = 30
"""How much "dim" or "brighter" changes a light's brightness."""
STEP_DEGREES = 1.0
"""How much "warmer" or "turn the heat up" changes the thermostat."""

KIND_WORDS: dict[str, frozenset[str]] = {
    "light": frozenset({"light", "lights", "lamp", "lamps", "bulb", "bulbs", "lighting"}),
    "climate": frozenset({"heat", "heating", "heater", "thermostat", "temperature", "ac", "aircon"}),
    "cover": frozenset({"door", "garage", "shutter", "shutters", "blind", "blinds", "curtain", "curtains"}),
    "fan": frozenset({"fan", "fans"}),
    "sensor": frozenset({"temperature", "sensor", "reading"}),
}
_OUTSIDE = frozenset({"outside", "outdoor", "outdoors", "out"})
_FILLER = frozenset(
    {"the", "my", "our", "a", "of", "in", "on", "at", "please", "house", "home", "whole", "there", "here"}
)
_EVERY = frozenset({"all", "every", "each", "everything"})
"""Said with a kind ("every light in the house"), the thing is all the devices of that kind."""
_LEADS = (
    "hey", "ok", "okay", "so", "um", "uh", "oh", "and", "now", "alright", "please", "just", "can you",
    "could you", "would you", "will you", "would you be able to", "could you possibly", "can i get",
    "can i have", "could i get", "could i have", "i'd like", "i would like", "i want", "i need",
    "i want you to", "i'd like you to", "i need you to", "go ahead and",
)  # fmt: skip
_LEAD = re.compile(rf"^(?:(?:{'|'.join(sorted(_LEADS, key=len, reverse=True))}) )+")
"""Words before the command itself, longest first ("would you be able to" before "would you")."""
_TAIL = re.compile(
    r"(?: (?:please|for me|now|right now|at the moment|currently|thanks|thank you|a bit|a little|real quick"
    r"|if so|too|as well))+$"
)
_PARTICLE = re.compile(r"\b(open|close|shut) up\b")
""""Open up the garage": the particle adds nothing."""
_BACK = re.compile(r" back (on|off|up|down)\b")
_NUMBER = r"(?P<value>\d+(?:dot\d+)?)"
_DECIMAL = re.compile(r"(\d)\.(\d)")
"""Kept through the normalisation, which drops punctuation: "19.5" -> "19dot5"."""


@dataclass(frozen=True)
class Thing:
    """What the words for the thing resolved to: one entity, or an area (with a kind of device)."""

    entities: tuple[HomeEntity, ...]
    area: str | None = None
    domain: str | None = None
    exact: bool = True
    """Every word named it: no word stood in for a word of its name ("coffee maker")."""

    def slots(self) -> dict:
        if len(self.entities) == 1:
            return {"name": self.entities[0].name}
        slots: dict = {}
        if self.area:
            slots["area"] = self.area
        if self.domain:
            slots["domain"] = self.domain
        return slots


def resolve(words: str, home: HomeSnapshot, domains: frozenset[str] | None = None) -> Thing | None:
    """The device(s) `words` name, or None if any word fits nothing (or several devices fit equally)."""
    tokens = [t for t in words.split() if t not in _FILLER]
    every = bool(_EVERY & set(tokens))
    tokens = [t for t in tokens if t not in _EVERY]
    if not tokens:
        return None
    candidates = [e for e in home.entities if domains is None or e.domain in domains]
    area = _area_in(tokens, home)
    rest = [t for t in tokens if area is None or t not in normalize_name(area).split()]
    outside = bool(_OUTSIDE & set(rest))
    scored = []
    for entity in candidates:
        name_words = {w for name in entity.names for w in normalize_name(name).split()}
        kind = KIND_WORDS.get(entity.domain, frozenset())
        unmatched = [
            t for t in rest if t not in name_words and t not in kind and not (outside and t in _OUTSIDE)
        ]
        named = sum(t in name_words for t in rest)
        distinctive = sum(t in name_words and t not in kind for t in rest)
        # One word may stand in for a word of the name ("coffee maker" for the Coffee Machine) when
        # a word of the name that is not just its kind was said ("desk lamp" is not the Living Room Lamp),
        # and only as the last word, where a name's own noun goes: "was the coffee machine" is no name.
        if len(unmatched) > 1 or (unmatched and (distinctive == 0 or unmatched[0] != rest[-1])):
            continue
        elsewhere = area is not None and normalize_name(entity.area or "") != normalize_name(area)
        if elsewhere and not set(normalize_name(area).split()) <= name_words:
            continue
        if outside and not (_OUTSIDE & name_words):
            continue
        scored.append(((-len(unmatched), named), entity))
    if not scored:
        return None
    best = max(score for score, _ in scored)
    entities = tuple(entity for score, entity in scored if score == best)
    exact = best[0] == 0
    if len(entities) == 1:
        return Thing(entities, exact=exact)
    kinds = {entity.domain for entity in entities}
    if (area is not None or every) and len(kinds) == 1:
        return Thing(entities, area, kinds.pop(), exact)
    return None


def _area_in(tokens: list[str], home: HomeSnapshot) -> str | None:
    text = f" {' '.join(tokens)} "
    found = [area for area in home.areas if f" {normalize_name(area)} " in text]
    return max(found, key=len) if found else None


# -- the command shapes ---------------------------------------------------------------------------
Build = Callable[[re.Match, HomeSnapshot], RecognizedIntent | None]


def _switch(match: re.Match, home: HomeSnapshot) -> RecognizedIntent | None:
    thing = resolve(match.group("thing"), home, frozenset({"light", "switch", "fan", "cover", "climate"}))
    if thing is None:
        return None
    on = match.group("switch") in ("on", "up", "start", "run")
    return RecognizedIntent(
        "HassTurnOn" if on else "HassTurnOff", thing.slots(), match.string, exact=thing.exact
    )


def _start_stop(match: re.Match, home: HomeSnapshot) -> RecognizedIntent | None:
    """ "Start the coffee machine": machines (switches, fans) start and stop; lights do not."""
    thing = resolve(match.group("thing"), home, frozenset({"switch", "fan"}))
    if thing is None:
        return None
    on = match.group("switch") in ("start", "run", "going", "running", "started", "brewing")
    return RecognizedIntent(
        "HassTurnOn" if on else "HassTurnOff", thing.slots(), match.string, exact=thing.exact
    )


def _toggle(match: re.Match, home: HomeSnapshot) -> RecognizedIntent | None:
    """HA's templates have no "toggle": it becomes on or off from the device's state now."""
    thing = resolve(match.group("thing"), home, frozenset({"light", "switch", "fan", "cover"}))
    if thing is None:
        return None
    on = all(entity.state in ("on", "open", "opening") for entity in thing.entities)
    # The direction is a guess from a state that may be old: never exact.
    return RecognizedIntent("HassTurnOff" if on else "HassTurnOn", thing.slots(), match.string, exact=False)


def _switch_in(match: re.Match, home: HomeSnapshot) -> RecognizedIntent | None:
    """ "Turn the lights on in the bedroom": the place after the verb belongs to the thing."""
    thing = resolve(
        f"{match.group('thing')} {match.group('place')}", home, frozenset({"light", "switch", "fan"})
    )
    if thing is None:
        return None
    on = match.group("switch") == "on"
    return RecognizedIntent(
        "HassTurnOn" if on else "HassTurnOff", thing.slots(), match.string, exact=thing.exact
    )


def _open_close(match: re.Match, home: HomeSnapshot) -> RecognizedIntent | None:
    thing = resolve(match.group("thing"), home, frozenset({"cover"}))
    if thing is None:
        return None
    opening = match.group("verb") in ("open", "raise", "lift")
    return RecognizedIntent(
        "HassTurnOn" if opening else "HassTurnOff", thing.slots(), match.string, exact=thing.exact
    )


def _cover_up_down(match: re.Match, home: HomeSnapshot) -> RecognizedIntent | None:
    """ "Garage door up": a cover goes up (opens) or down (closes)."""
    thing = resolve(match.group("thing"), home, frozenset({"cover"}))
    if thing is None:
        return None
    return RecognizedIntent(
        "HassTurnOn" if match.group("way") == "up" else "HassTurnOff", thing.slots(), match.string
    )


def _brightness(match: re.Match, home: HomeSnapshot) -> RecognizedIntent | None:
    thing = resolve(match.group("thing"), home, frozenset({"light"}))
    if thing is None:
        return None
    way = match.group("way")
    if way in ("full", "max", "maximum", "all the way up", "100 percent"):
        value = 100
    elif way in ("half", "half brightness", "halfway"):
        value = 50
    else:
        value = stepped_brightness(thing, way in ("up", "brighter", "brighten", "lighter"))
    return RecognizedIntent(
        "HassLightSet", {**thing.slots(), "brightness": value}, match.string, exact=thing.exact
    )


def _brightness_value(match: re.Match, home: HomeSnapshot) -> RecognizedIntent | None:
    """ "Set the lamp to 20%"; for a cover ("set the garage door to 50 percent") its position."""
    value = max(0, min(100, round(_value(match))))
    thing = resolve(match.group("thing"), home, frozenset({"light"}))
    if thing is not None:
        return RecognizedIntent(
            "HassLightSet", {**thing.slots(), "brightness": value}, match.string, exact=thing.exact
        )
    return _position(match, home, value)


def _everything(match: re.Match, home: HomeSnapshot) -> RecognizedIntent | None:
    """ "Everything off in the kitchen": every device of the area. Never exact: a door or the heating
    among them is asked about first."""
    area = home.area(match.group("place"))
    if area is None or not home.select(area):
        return None
    on = match.group("switch") == "on"
    return RecognizedIntent("HassTurnOn" if on else "HassTurnOff", {"area": area}, match.string, exact=False)


def _cover_half(match: re.Match, home: HomeSnapshot) -> RecognizedIntent | None:
    """ "Open the garage door halfway": its position, half open."""
    return _position(match, home, 50)


def _position(match: re.Match, home: HomeSnapshot, value: int) -> RecognizedIntent | None:
    thing = resolve(match.group("thing"), home, frozenset({"cover"}))
    if thing is None:
        return None
    return RecognizedIntent(
        "HassSetPosition", {**thing.slots(), "position": value}, match.string, exact=thing.exact
    )


def _temperature(match: re.Match, home: HomeSnapshot) -> RecognizedIntent | None:
    thing = resolve(f"{match.group('thing') or ''} thermostat", home, frozenset({"climate"}))
    if thing is None or len(thing.entities) != 1:
        return None
    if match.groupdict().get("value"):
        value = _value(match)
    else:
        value = stepped_temperature(thing, match.group("way") in ("up", "warmer", "hotter", "higher"))
        if value is None:
            return None
    return RecognizedIntent(
        "HassClimateSetTemperature", {**thing.slots(), "temperature": value}, match.string, exact=thing.exact
    )


def _temperature_steps(match: re.Match, home: HomeSnapshot) -> RecognizedIntent | None:
    """ "Turn the heating up two degrees", "lower the thermostat by one degree"."""
    thing = resolve(f"{match.group('thing')} thermostat", home, frozenset({"climate"}))
    target = thing.entities[0].attributes.get("temperature") if thing and len(thing.entities) == 1 else None
    if thing is None or target is None:
        return None
    steps = _STEPS.get(match.group("steps")) or float(match.group("steps"))
    up = match.group("way") in ("up", "increase", "raise", "warmer")
    value = float(target) + (steps if up else -steps)
    return RecognizedIntent(
        "HassClimateSetTemperature", {**thing.slots(), "temperature": value}, match.string, exact=thing.exact
    )


def _state(match: re.Match, home: HomeSnapshot) -> RecognizedIntent | None:
    thing = resolve(match.group("thing"), home)
    if thing is None:
        return None
    return RecognizedIntent("HassGetState", thing.slots(), match.string, exact=thing.exact)


def _warmth(match: re.Match, home: HomeSnapshot) -> RecognizedIntent | None:
    """ "How warm is it outside / in the living room / inside": the temperature sensor there."""
    place = match.group("place") or ""
    if _INSIDE.fullmatch(place):
        return _inside_temperature(match, home)
    thing = resolve(f"{place} temperature", home, frozenset({"sensor", "climate"}))
    if thing is None:
        return None
    sensors = [e for e in thing.entities if e.domain == "sensor"]
    return RecognizedIntent(
        "HassGetState", {"name": (sensors or list(thing.entities))[0].name}, match.string, exact=thing.exact
    )


def _inside_temperature(match: re.Match, home: HomeSnapshot) -> RecognizedIntent | None:
    """ "Inside", "in the house": the one temperature sensor in an area of the home, if there is one."""
    inside = [
        e
        for e in home.entities
        if e.domain == "sensor" and e.device_class == "temperature" and e.area is not None
    ]
    if len(inside) != 1:
        return None
    return RecognizedIntent("HassGetState", {"name": inside[0].name}, match.string)


_INSIDE = re.compile(r"(?:inside|indoors|in here|in the house|inside the house|at home)(?: now| right now)?")
_THING = r"(?P<thing>[\w' ]+?)"
_TO_PERCENT = rf"(?:to|at|down to|up to) {_NUMBER} ?(?:percent|%)"
_TO_DEGREES = rf"(?:(?:up |down )?to|at) {_NUMBER}(?: ?degrees?| ?°)?(?: celsius| fahrenheit)?"
_FULL_OR_HALF = r"(?:to )?(?P<way>full|max|maximum|all the way up|half|half brightness|halfway)"
_HALF_OPEN = r"(?P<way>halfway|half way|half|partway|part way)"
_STEPS = {"a": 1.0, "one": 1.0, "two": 2.0, "three": 3.0, "four": 4.0, "five": 5.0, "a couple of": 2.0}
_BY_STEPS = r"(?:by )?(?P<steps>a|one|two|three|four|five|a couple of|\d+) degrees?"
_MORE_OR_LESS = r"(?:a bit |a little |slightly |a touch |a little bit )?"
_STATE_TAIL = r"(?: set to| at| now| reading| doing)?"
_SET_VERB = (
    r"(?:set|turn|put|change|bring|make|drop|lower|raise|bump|increase|decrease|reduce|crank|knock|push)"
)
_LEFT = r"(?:leave|turn off|turn on|close|open|switch off|switch on)"
_SHAPES: tuple[tuple[re.Pattern[str], Build], ...] = tuple(
    (re.compile(f"^{pattern}$"), build)
    for pattern, build in (
        (rf"(?:turn|switch|put|flip|flick|pop|shut) (?P<switch>on|off) {_THING}", _switch),
        (rf"(?:turn|switch|put|flip|flick|pop|shut) {_THING} (?P<switch>on|off)", _switch),
        (rf"{_THING} (?P<switch>on|off)", _switch),
        (rf"(?:kill|shut) {_THING}(?P<switch>)", _switch),
        (rf"toggle {_THING}", _toggle),
        (rf"(?P<switch>start|run|stop) {_THING}", _start_stop),
        (rf"get {_THING} (?P<switch>going|running|started|brewing)", _start_stop),
        (r"(?:(?:turn|switch) )?everything (?P<switch>on|off) in (?:the )?(?P<place>[\w' ]+)", _everything),
        (r"(?:turn|switch) (?P<switch>on|off) everything in (?:the )?(?P<place>[\w' ]+)", _everything),
        (rf"(?:turn|switch) {_THING} (?P<switch>on|off) in (?P<place>[\w' ]+)", _switch_in),
        (rf"(?:open|raise|lift|put|set|move) {_THING} {_HALF_OPEN}", _cover_half),
        (rf"(?P<verb>open|close|shut|raise|lower|lift) {_THING}", _open_close),
        (rf"(?:put|bring|move|pull|roll|take)? ?{_THING} (?P<way>up|down)", _cover_up_down),
        (rf"(?:set|turn|put|bring|dim|change) {_THING} {_TO_PERCENT}", _brightness_value),
        (rf"{_THING} {_TO_PERCENT}", _brightness_value),
        (rf"(?P<way>dim|darken|brighten) {_THING}", _brightness),
        (rf"(?:turn|put) {_THING} (?P<way>up|down)", _brightness),
        (rf"(?:turn|put) (?P<way>up|down) {_THING}", _brightness),
        (rf"make {_THING} (?P<way>brighter|lighter|darker|dimmer)", _brightness),
        (rf"(?:turn|put|set) {_THING} {_FULL_OR_HALF}", _brightness),
        (rf"{_THING} (?:to|at) (?P<way>full|max|maximum)(?: brightness)?", _brightness),
        (
            rf"(?:turn|put|bump|bring|knock|push|set|crank|nudge) {_THING} (?P<way>up|down) {_BY_STEPS}",
            _temperature_steps,
        ),
        (rf"(?P<way>increase|decrease|raise|lower|reduce|drop) {_THING} {_BY_STEPS}", _temperature_steps),
        (
            rf"{_SET_VERB} {_THING} {_TO_DEGREES}",
            _temperature,
        ),
        (rf"{_THING} {_TO_DEGREES}", _temperature),
        (rf"make it {_NUMBER}(?: ?degrees?)?(?: in {_THING})?", _temperature),
        (rf"(?:turn|put|crank|knock|bump|nudge) {_THING} (?P<way>up|down)", _temperature),
        (rf"(?:turn|put) (?P<way>up|down) {_THING}", _temperature),
        (
            rf"make it {_MORE_OR_LESS}(?P<way>warmer|cooler|hotter|colder)"
            rf"(?: in (?:here|(?P<thing>[\w' ]+)))?",
            _temperature,
        ),
        (
            rf"(?:what is|what's|whats|how is|how's|tell me|check) {_THING}{_STATE_TAIL}",
            _state,
        ),
        (rf"what temperature is {_THING}{_STATE_TAIL}", _state),
        (
            rf"(?:what is|what's|whats) the (?:current |actual )?"
            rf"(?:temperature|brightness|level|position|setting|state|status) (?:on|of|at|for) {_THING}",
            _state,
        ),
        (rf"how (?:bright|warm|hot) is {_THING}", _state),
        (rf"(?:is|are) {_THING} (?:on|off|open|closed|shut|running|still on|still open)(?: now)?", _state),
        (rf"(?:did i|have i|did you) {_LEFT} {_THING}(?: on| off| open)?", _state),
        (r"how (?:warm|cold|hot|chilly) is it(?: (?:in )?(?:the )?(?P<place>[\w' ]+?))?", _warmth),
        (r"what(?: is|'s|s) the temperature(?: like)?(?: (?:in )?(?:the )?(?P<place>[\w' ]+?))?", _warmth),
        (rf"what temperature (?:did i|have i|did you|have you) set {_THING} to", _state),
    )
)


def recognize_loosely(text: str, home: HomeSnapshot) -> RecognizedIntent | None:
    """A home intent in `text` by the command shapes above, or None."""
    spelled = _DECIMAL.sub(r"\1dot\2", text.replace("%", " percent").replace("°", " degrees"))
    words = _TAIL.sub("", _LEAD.sub("", normalize_name(spelled)))
    words = _PARTICLE.sub(r"\1", _BACK.sub(r" \1", words))  # "turn the lamp back on", "open up"
    for pattern, build in _SHAPES:
        match = pattern.match(words)
        if match is None:
            continue
        found = build(match, home)
        if found is not None:
            return RecognizedIntent(found.name, found.slots, text, source=Source.GRAMMAR, exact=found.exact)
    return None


def _value(match: re.Match) -> float:
    return float(match.group("value").replace("dot", "."))


def stepped_brightness(thing: Thing, up: bool) -> int:
    """A step brighter or dimmer than the brightest of the lights now (never quite off)."""
    step = STEP_PERCENT if up else -STEP_PERCENT
    return max(5, min(100, _brightness_now(thing.entities) + step))


def stepped_temperature(thing: Thing, up: bool) -> float | None:
    """A step warmer or cooler than the thermostat's target now (None when it has none)."""
    target = thing.entities[0].attributes.get("temperature")
    if target is None:
        return None
    return float(target) + (STEP_DEGREES if up else -STEP_DEGREES)


def _brightness_now(entities: tuple[HomeEntity, ...]) -> int:
    """The brightest of the lights, in percent (0 when all are off)."""
    values = [
        round(int(e.attributes.get("brightness") or 0) * 100 / 255) if e.state == "on" else 0
        for e in entities
    ]
    return max(values, default=0)
