"""The LLM fallback: who is asked, how its calls map onto the home, and what the words must allow."""

from __future__ import annotations

import dataclasses

import pytest

from wyoming_persona.agent.backends.base import ChatRequest, Delta, ToolCall
from wyoming_persona.home.model_intents import ModelIntents, intent_of, plausible
from wyoming_persona.home.recognizer import RecognizedIntent


class ScriptedBackend:
    """Our ChatBackend protocol answering with fixed deltas (the real model is measured in bench/home.py)."""

    name = "scripted"

    def __init__(self, *deltas: Delta) -> None:
        self.deltas = deltas
        self.requests: list[ChatRequest] = []
        self.closed = 0

    async def stream(self, request: ChatRequest):
        self.requests.append(request)
        try:
            for delta in self.deltas:
                yield delta
        finally:
            self.closed += 1

    async def close(self) -> None:
        pass


@pytest.fixture
def plain_home(home):
    return dataclasses.replace(
        home, entities=tuple(dataclasses.replace(e, aliases=()) for e in home.entities)
    )


@pytest.mark.parametrize(
    ("text", "asked"),
    [
        ("Can I get some light in the kitchen?", True),
        ("It's gloomy in the bedroom, do something.", True),
        ("How does a thermostat work?", False),
        ("What's your favourite kind of lamp?", False),
        ("Tell me about the history of garages.", False),
        ("Why is the sky blue?", False),  # nothing of the home
    ],
)
def test_who_is_asked(plain_home, text, asked):
    assert ModelIntents(ScriptedBackend()).worth_asking(text, plain_home) is asked


@pytest.mark.parametrize(
    ("call", "intent", "slots"),
    [
        (ToolCall("turn_on", {"device": "kitchen light"}), "HassTurnOn", {"name": "Kitchen Light"}),
        (ToolCall("turn_off", {"device": "kitchen"}), "HassTurnOff", {"area": "Kitchen"}),
        (
            ToolCall("set_level", {"device": "garage door", "percent": 50}),
            "HassSetPosition",
            {"name": "Garage Door", "position": 50},
        ),
        (
            ToolCall("change", {"device": "living room lamp", "direction": "down"}),
            "HassLightSet",
            {"name": "Living Room Lamp", "brightness": 20},
        ),
        (
            ToolCall("change", {"device": "heating", "direction": "up"}),
            "HassClimateSetTemperature",
            {"name": "Thermostat", "temperature": 22.0},
        ),
        (
            ToolCall("set_temperature", {"degrees": "19.5"}),
            "HassClimateSetTemperature",
            {"name": "Thermostat", "temperature": 19.5},
        ),
        (
            ToolCall("get_state", {"device": "outdoor temperature"}),
            "HassGetState",
            {"name": "Outdoor Temperature"},
        ),
    ],
)
def test_calls_map_onto_the_home(plain_home, call, intent, slots):
    found = intent_of(call, plain_home)
    assert (found.name, found.slots) == (intent, slots)


def test_calls_on_nothing_of_the_home_are_dropped(plain_home):
    assert intent_of(ToolCall("turn_on", {"device": "hallway fan"}), plain_home) is None
    assert intent_of(ToolCall("set_level", {"device": "kitchen light"}), plain_home) is None
    assert intent_of(ToolCall("launch_rocket", {"device": "kitchen light"}), plain_home) is None


def test_the_words_must_allow_what_the_model_chose():
    turn_on = RecognizedIntent("HassTurnOn", {"name": "Kitchen Light"})
    state = RecognizedIntent("HassGetState", {"name": "Kitchen Light"})
    assert not plausible(turn_on, "My kitchen is a mess.")
    assert plausible(turn_on, "Kitchen light on, please")
    assert plausible(state, "Is there a light on in the kitchen?")
    assert not plausible(state, "The kitchen light.")


async def test_a_call_becomes_the_intent_and_words_mean_chat(plain_home):
    called = ModelIntents(ScriptedBackend(Delta(tool_calls=(ToolCall("turn_on", {"device": "kitchen"}),))))
    found = await called.recognize("Some light in the kitchen, please, turn it on", plain_home)
    assert (found.name, found.slots) == ("HassTurnOn", {"area": "Kitchen"})
    [request] = called.backend.requests
    assert request.tools and "Kitchen Light (light, Kitchen)" in request.messages[0]["content"]

    chatty = ScriptedBackend(Delta("chat"), Delta(" and more words"))
    assert (
        await ModelIntents(chatty).recognize("The kitchen light is pretty, turn around", plain_home) is None
    )
    assert chatty.closed == 1  # stopped at the first word
