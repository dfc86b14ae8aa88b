"""The second pass: everyday words for devices and settings that HA's templates do not know."""

from __future__ import annotations

import dataclasses

import pytest

from wyoming_persona.home.loose import recognize_loosely


@pytest.fixture
def plain_home(home):
    """The harness's home as HA has it: no aliases."""
    entities = tuple(dataclasses.replace(e, aliases=()) for e in home.entities)
    return dataclasses.replace(home, entities=entities)


@pytest.mark.parametrize(
    ("text", "intent", "slots"),
    [
        ("Hey, shut off the coffee maker please", "HassTurnOff", {"name": "Coffee Machine"}),
        ("bedroom lamp on", "HassTurnOn", {"name": "Bedroom Light"}),
        ("Shut the garage.", "HassTurnOff", {"name": "Garage Door"}),
        ("Put the living room lamp at 35 %", "HassLightSet", {"name": "Living Room Lamp", "brightness": 35}),
        ("Make the living room lamp darker.", "HassLightSet", {"name": "Living Room Lamp", "brightness": 20}),
        (
            "Turn the living room lamp all the way up",
            "HassLightSet",
            {"name": "Living Room Lamp", "brightness": 100},
        ),
        (
            "Bring the heating down to 19 degrees",
            "HassClimateSetTemperature",
            {"name": "Thermostat", "temperature": 19},
        ),
        ("make it colder", "HassClimateSetTemperature", {"name": "Thermostat", "temperature": 20}),
        ("How cold is it outside?", "HassGetState", {"name": "Outdoor Temperature"}),
        ("Did I leave the garage door open?", "HassGetState", {"name": "Garage Door"}),
        ("What's the heating set to?", "HassGetState", {"name": "Thermostat"}),
        ("toggle the living room lamp", "HassTurnOff", {"name": "Living Room Lamp"}),  # it is on
        ("Switch the lamp off in the living room", "HassTurnOff", {"name": "Living Room Lamp"}),
        ("Turn off all the lights in the house", "HassTurnOff", {"domain": "light"}),
        ("Bring the garage door down", "HassTurnOff", {"name": "Garage Door"}),
        ("Heat to 20.5 please", "HassClimateSetTemperature", {"name": "Thermostat", "temperature": 20.5}),
        ("Open the garage door halfway", "HassSetPosition", {"name": "Garage Door", "position": 50}),
        ("Set the garage door to 30 percent", "HassSetPosition", {"name": "Garage Door", "position": 30}),
        ("Kitchen light to full brightness", "HassLightSet", {"name": "Kitchen Light", "brightness": 100}),
        (
            "Turn the heating up a degree",
            "HassClimateSetTemperature",
            {"name": "Thermostat", "temperature": 22},
        ),
        (
            "Lower the thermostat by two degrees",
            "HassClimateSetTemperature",
            {"name": "Thermostat", "temperature": 19},
        ),
        (
            "Make it a bit warmer in here",
            "HassClimateSetTemperature",
            {"name": "Thermostat", "temperature": 22},
        ),
        ("Please turn everything off in the kitchen", "HassTurnOff", {"area": "Kitchen"}),
        ("What's the brightness of the bedroom light?", "HassGetState", {"name": "Bedroom Light"}),
        ("Could you get the coffee machine running?", "HassTurnOn", {"name": "Coffee Machine"}),
        ("Close up the garage door.", "HassTurnOff", {"name": "Garage Door"}),
        (
            "Crank the heating up to 23.",
            "HassClimateSetTemperature",
            {"name": "Thermostat", "temperature": 23},
        ),
        (
            "Nudge the thermostat up a degree",
            "HassClimateSetTemperature",
            {"name": "Thermostat", "temperature": 22},
        ),
        ("How warm is it out there right now?", "HassGetState", {"name": "Outdoor Temperature"}),
        ("What's the temperature inside?", "HassGetState", {"name": "Living Room Temperature"}),
        ("Could you flick the kitchen light on?", "HassTurnOn", {"name": "Kitchen Light"}),
        ("Would you be able to switch the bedroom light off?", "HassTurnOff", {"name": "Bedroom Light"}),
        ("Can I get the bedroom light at 40%?", "HassLightSet", {"name": "Bedroom Light", "brightness": 40}),
        (
            "I'd like the thermostat at 20 degrees.",
            "HassClimateSetTemperature",
            {"name": "Thermostat", "temperature": 20},
        ),
        ("What temperature did you set the heating to?", "HassGetState", {"name": "Thermostat"}),
    ],
)
def test_everyday_words(plain_home, text, intent, slots):
    found = recognize_loosely(text, plain_home)
    assert found is not None
    assert (found.name, found.slots) == (intent, slots)


@pytest.mark.parametrize(
    "text",
    [
        "How does a garage door opener work?",
        "What's a nice temperature for a nursery?",
        "Tell me about the history of the light bulb.",
        "What is the capital of France?",
        "Turn on the desk lamp",  # no such lamp: the Living Room Lamp is not meant
        "Is it going to rain?",
        "Should I open a savings account?",
        "Close your eyes and imagine the sea.",
    ],
)
def test_chat_and_strangers_do_not_match(plain_home, text):
    assert recognize_loosely(text, plain_home) is None
