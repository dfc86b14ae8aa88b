"""Never act on what was not a command (issue 19): remarks, questions, negations and guesses.

Each sentence of the issue that changed the home through Home Assistant is here, end to end through
HomeControl with the recogniser and an LLM that would call a function every time (the worst case:
the real model did close the garage door on "my neighbour's garage door is open again").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from wyoming_persona.agent.backends.base import Delta, ToolCall
from wyoming_persona.home.control import HomeControl, HomeIntent
from wyoming_persona.home.link import HomeLink, HomeLinkSettings
from wyoming_persona.home.loose import recognize_loosely
from wyoming_persona.home.model_intents import ModelIntents
from wyoming_persona.home.recognizer import IntentRecognizer
from wyoming_persona.personas import PersonaManager

from .test_home_model_intents import ScriptedBackend

SHIPPED_PERSONAS = Path(__file__).resolve().parents[2] / "config" / "personas"
CLOSE_GARAGE = ToolCall("turn_off", {"device": "garage door"})


@pytest.fixture(scope="module")
def recognizer() -> IntentRecognizer:
    return IntentRecognizer()


@pytest.fixture
def plain_home(home):
    """The harness's home as HA has it: no aliases."""
    return dataclasses.replace(
        home, entities=tuple(dataclasses.replace(e, aliases=()) for e in home.entities)
    )


@pytest.fixture
def butler(tmp_path):
    return PersonaManager(SHIPPED_PERSONAS, tmp_path / "state").get("butler")


def control_with(home, recognizer, call: ToolCall | None = None) -> HomeControl:
    """Home control over `home`, connected, with an LLM that makes `call` whatever it is asked."""
    model = ModelIntents(ScriptedBackend(Delta(tool_calls=(call,)))) if call else None
    control = HomeControl(HomeLink(HomeLinkSettings("http://127.0.0.1:9", "x")), recognizer, model)
    control.link.snapshot = home
    control.link.connected.set()
    return control


async def no_phrase(persona, fact):
    return None


@pytest.mark.parametrize(
    ("text", "call"),
    [
        ("my neighbour's garage door is open again", CLOSE_GARAGE),
        ("I turned the kitchen light off myself", ToolCall("turn_off", {"device": "kitchen light"})),
        ("what happens if I turn off the thermostat", ToolCall("set_temperature", {"degrees": 20})),
        ("Was the coffee machine on?", ToolCall("turn_on", {"device": "coffee machine"})),
        ("Why's the coffee machine on?", ToolCall("turn_on", {"device": "coffee machine"})),
        ("Not the coffee machine off", ToolCall("turn_off", {"device": "coffee machine"})),
        ("Don't close the garage door, I'm still working in there.", CLOSE_GARAGE),
        ("Should I close the garage door at night?", CLOSE_GARAGE),
        ("If it rains, close the garage door.", CLOSE_GARAGE),
    ],
)
async def test_the_sentences_that_changed_the_home_change_nothing(plain_home, recognizer, butler, text, call):
    reply = await control_with(plain_home, recognizer, call).answer(text, butler, no_phrase, "c1")
    assert reply is None or reply.intent is None, reply


@pytest.mark.parametrize(
    "text", ["Was the coffee machine on?", "Why's the coffee machine on?", "Not the coffee machine off"]
)
def test_the_loose_grammar_takes_no_function_word_for_a_name(plain_home, text):
    assert recognize_loosely(text, plain_home) is None


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Turn off the coffee maker.", HomeIntent("HassTurnOff", {"name": "Coffee Machine"})),
        ("Close the garage door, please.", HomeIntent("HassTurnOff", {"name": "Garage Door"})),
        (
            "Can you turn the heat up to 23?",
            HomeIntent("HassClimateSetTemperature", {"name": "Thermostat", "temperature": 23.0}),
        ),
        (
            "I'm off to bed, switch off the bedroom light.",
            HomeIntent("HassTurnOff", {"name": "Bedroom Light"}),
        ),
    ],
)
async def test_everyday_commands_still_act(plain_home, recognizer, butler, text, intent):
    reply = await control_with(plain_home, recognizer).answer(text, butler, no_phrase, "c1")
    assert reply is not None and reply.intent == intent


async def test_a_guess_at_the_garage_door_is_asked_back_and_done_on_yes(plain_home, recognizer, butler):
    # The LLM's call on a door is a guess: asked back, acted on only after a yes in the same conversation.
    control = control_with(plain_home, recognizer, ToolCall("turn_off", {"device": "garage door"}))
    question = await control.answer("Can you get the garage shut for me?", butler, no_phrase, "c1")
    assert question.intent is None and question.text.endswith("?") and "garage door" in question.text
    assert await control.answer("yes", butler, no_phrase, "other conversation") is None
    done = await control.answer("Yes, please.", butler, no_phrase, "c1")
    assert done.intent == HomeIntent("HassTurnOff", {"name": "Garage Door"})
    again = await control.answer("yes", butler, no_phrase, "c1")  # asked once, done once
    assert again is None


async def test_a_no_leaves_it_and_anything_else_lets_the_question_lapse(plain_home, recognizer, butler):
    control = control_with(plain_home, recognizer, CLOSE_GARAGE)
    await control.answer("Can you get the garage shut for me?", butler, no_phrase, "c1")
    declined = await control.answer("No, leave it.", butler, no_phrase, "c1")
    assert declined.intent is None and declined.text == "Very good. I shall leave the garage door as it is."

    await control.answer("Can you get the garage shut for me?", butler, no_phrase, "c2")
    assert await control.answer("What's the capital of Italy?", butler, no_phrase, "c2") is None
    assert await control.answer("yes", butler, no_phrase, "c2") is None


async def test_a_guessed_stand_in_word_for_a_door_is_asked_back(plain_home, recognizer, butler):
    # "the garage gate" is no name of the home's; the grammar's one stand-in word makes it a guess.
    control = control_with(plain_home, recognizer)
    reply = await control.answer("Close the garage gate.", butler, no_phrase, "c1")
    assert reply.intent is None and reply.text == "If I may ask first, shall I close the garage door?"
    lamp = await control.answer("Turn off the living room light.", butler, no_phrase, "c1")
    assert lamp.intent == HomeIntent("HassTurnOff", {"name": "Living Room Lamp"})  # a light is no risk


async def test_the_model_acts_only_on_the_users_request(plain_home, recognizer, butler):
    kitchen_on = ToolCall("turn_on", {"device": "kitchen light"})
    control = control_with(plain_home, recognizer, kitchen_on)
    assert await control.answer("The kitchen feels gloomy today.", butler, no_phrase, "c1") is None
    reply = await control.answer("Can you get the kitchen bright for me?", butler, no_phrase, "c1")
    assert reply.intent == HomeIntent("HassTurnOn", {"name": "Kitchen Light"})
