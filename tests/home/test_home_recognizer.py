"""Home commands found with HA's own templates against the home's real names; chat stays chat."""

from __future__ import annotations

import pytest

from wyoming_persona.home.recognizer import IntentRecognizer


@pytest.fixture(scope="module")
def recognizer() -> IntentRecognizer:
    return IntentRecognizer()


@pytest.mark.parametrize(
    ("text", "intent", "slots"),
    [
        ("Turn on the kitchen light.", "HassTurnOn", {"name": "Kitchen Light"}),
        ("please turn the kitchen light on", "HassTurnOn", {"name": "Kitchen Light"}),
        ("Could you switch off the coffee machine, please?", "HassTurnOff", {"name": "Coffee Machine"}),
        ("turn on the coffee maker", "HassTurnOn", {"name": "Coffee Machine"}),  # an alias
        (
            "set the living room lamp to 20 percent",
            "HassLightSet",
            {"name": "Living Room Lamp", "brightness": 20},
        ),
        ("open the garage door", "HassTurnOn", {"name": "Garage Door"}),
        (
            "set the thermostat to 22 degrees",
            "HassClimateSetTemperature",
            {"name": "Thermostat", "temperature": 22},
        ),
        ("turn off the lights in the living room", "HassTurnOff", {"area": "Living Room", "domain": "light"}),
        ("What is the outdoor temperature?", "HassGetState", {"name": "Outdoor Temperature"}),
        ("is the garage door open", "HassGetState", {"name": "Garage Door", "state": "open"}),
    ],
)
def test_home_commands_and_questions(recognizer, home, text, intent, slots):
    found = recognizer.recognize(text, home)
    assert found is not None and not found.unknown
    assert (found.name, found.slots) == (intent, slots)


@pytest.mark.parametrize(
    "text",
    [
        "What is the capital of Italy?",
        "How does a thermostat work?",
        "Tell me a joke about light bulbs.",
        "Set a timer for five minutes.",
        "What time is it?",
        "My name is Alice.",
        "",
    ],
)
def test_chat_is_not_a_home_command(recognizer, home, text):
    assert recognizer.recognize(text, home) is None


def test_a_device_the_home_does_not_have_is_recognised_as_unknown(recognizer, home):
    found = recognizer.recognize("turn on the hallway fan", home)
    assert found is not None and found.unknown
    assert found.name == "HassTurnOn" and found.slots["name"] == "hallway fan"
    assert recognizer.recognize("what is the hallway fan", home) is None  # questions are left to chat


def test_a_new_home_is_picked_up(recognizer, home):
    import dataclasses

    from wyoming_persona.home.model import HomeEntity

    assert recognizer.recognize("turn on the desk lamp", home).unknown
    lamp = HomeEntity("light.desk_lamp", "Desk Lamp", "off", "Bedroom")
    bigger = dataclasses.replace(home, entities=(*home.entities, lamp), version=home.version + 1)
    found = recognizer.recognize("turn on the desk lamp", bigger)
    assert not found.unknown and found.slots == {"name": "Desk Lamp"}


@pytest.mark.parametrize(
    ("text", "slots"),
    [
        ("I'm heading out, so switch off the coffee machine.", {"name": "Coffee Machine"}),
        ("The bedroom is too bright. Could you turn the light off?", {"area": "Bedroom", "domain": "light"}),
        ("The coffee machine is still running, switch it off.", {"name": "Coffee Machine"}),
    ],
)
def test_a_command_after_a_remark(recognizer, home, text, slots):
    found = recognizer.recognize(text, home)
    assert found is not None and found.name == "HassTurnOff" and found.slots == slots
    assert found.text == text


@pytest.mark.parametrize("text", ["Shut up", "Turn it off.", "Switch that on"])
def test_no_unknown_device_is_made_of_a_pronoun_or_a_particle(recognizer, home, text):
    assert recognizer.recognize(text, home) is None


@pytest.mark.parametrize(
    ("text", "slots"),
    [
        ("Could you check whether the garage door is open?", {"name": "Garage Door", "state": "open"}),
        ("Do you know if the coffee maker is on?", {"name": "Coffee Machine", "state": "on"}),
        ("Please find out if the kitchen light is on.", {"name": "Kitchen Light", "state": "on"}),
    ],
)
def test_a_request_to_find_out_is_a_state_question(recognizer, home, text, slots):
    """Its "if" asks; it is no condition (a held-out run: "I'll check the garage door for you", and
    nothing was checked). A question never acts."""
    found = recognizer.recognize(text, home)
    assert found is not None and (found.name, found.slots) == ("HassGetState", slots)
    assert recognizer.recognize("If the garage door is open, close it.", home) is None


def test_a_turn_on_with_a_percentage_sets_the_brightness(recognizer, home):
    """The templates hear only "switch on the lamp"; the percentage said with it is the brightness."""
    found = recognizer.recognize("Switch on the living room lamp, nice and dim, maybe 15 percent.", home)
    assert found is not None
    assert (found.name, found.slots) == ("HassLightSet", {"name": "Living Room Lamp", "brightness": 15})
    found = recognizer.recognize("Switch on the kitchen light.", home)
    assert found is not None and found.name == "HassTurnOn"
