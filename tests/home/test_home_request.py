"""The form of a sentence decides whether the home may act, before any device is matched (issue 19)."""

from __future__ import annotations

import pytest

from wyoming_persona.home.request import Form, judge, split_clauses, utterance_form


@pytest.mark.parametrize(
    "text",
    [
        "Turn on the hallway light.",
        "please switch the porch lamp off",
        "Could you please open the shed door?",
        "Would you mind turning the fan off?",
        "I'd like the bedroom lamp at 30%.",
        "I want the heating on.",
        "Go ahead and close the blinds.",
        "Porch light off now.",
        "Lights off in the lounge, please.",
        "Okay, set the heating to 21.",
        "Heat to 22.5, please.",
        "You can switch off the porch light now.",
        "Can I have the lights on in the study?",
        "I'm leaving, close the garage.",
        "If you could turn off the fan, that would be great.",
        "Max brightness on the desk lamp.",
        "I want to read, so turn on the bedroom light.",
        "Knock the heating down a degree.",
    ],
)
def test_requests_may_act(text):
    assert utterance_form(text).form is Form.REQUEST, utterance_form(text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("My neighbour's garage door is open again.", "someone else's"),
        ("Turn off my neighbour's porch light.", "someone else's"),
        ("My sister's lamp keeps flickering.", "someone else's"),
        ("The coffee machine at the office is broken.", "someone else's"),
        ("I turned the kitchen light off myself.", "statement"),
        ("Switched off the porch light earlier.", "past"),
        ("The light turned off by itself.", "past"),
        ("What happens if I turn off the thermostat?", "condition"),
        ("If it rains, close the windows.", "condition"),
        ("Turn on the porch light at 7 pm.", "another time"),
        ("Switch on the heating in ten minutes.", "another time"),
        ("Don't open the shed door.", "negation"),
        ("No need to turn on the light.", "negation"),
        ("Not the coffee machine off.", "negation"),
        ("Should I turn the heating up at night?", "advice"),
        ("You should close the garage door.", "advice"),
        ("Was the coffee machine on?", "question about the past"),
        ("Why's the coffee machine on?", "question about the past"),
        ('He keeps singing "turn off the lights".', "quoted speech"),
        ("Leave the light on.", "keep"),
        ("Turn off all the lights except the porch.", "an exception"),
    ],
)
def test_what_is_no_request_never_acts(text, why):
    judgement = utterance_form(text)
    assert judgement.form is not Form.REQUEST
    assert judgement.reason.startswith(why), judgement


@pytest.mark.parametrize(
    "text",
    [
        "She said, turn off the light.",
        "Turn off the light, no, wait.",
        "Turn off the porch light. Actually, never mind.",
        "If it gets cold tonight, turn the heating up.",
    ],
)
def test_what_comes_before_or_after_can_take_an_order_back(text):
    assert utterance_form(text).form is not Form.REQUEST


@pytest.mark.parametrize(
    "text",
    ["Is the garage door open?", "Did I leave the porch light on?", "Could you tell me the temperature?"],
)
def test_questions_may_be_answered_but_never_act(text):
    assert judge(text).form is Form.QUESTION


def test_clauses_keep_their_punctuation():
    assert split_clauses("It's dark in here. Is the lamp on? So turn it on") == [
        "It's dark in here.",
        "Is the lamp on?",
        "So turn it on",
    ]
