"""The pure grading of bench/helpful.py: refusals, facts, answers to something else, the question file.
(Nothing of the held-out part is used here but its size.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HELPFUL_PY = Path(__file__).resolve().parents[2] / "bench" / "helpful.py"


def _load_module():
    spec = importlib.util.spec_from_file_location("bench_helpful", HELPFUL_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


bench = _load_module()


def test_the_question_file_has_both_parts() -> None:
    tuned = bench.load_part(bench.DEFAULT_QUESTIONS, "tuned")
    held_out = bench.load_part(bench.DEFAULT_QUESTIONS, "held_out")
    assert len(tuned.items) + len(held_out.items) >= 120 and len(held_out.items) >= 30
    assert {i.category for i in tuned.items} == {i.category for i in held_out.items}
    assert len(tuned.recall) >= 1 and len(held_out.recall) >= 1
    assert not {i.text for i in tuned.items} & {i.text for i in held_out.items}


@pytest.mark.parametrize(
    "reply",
    [
        "I'm sorry, but I can't assist with that.",
        "I'm sorry, but I don't have the ability to provide information about sailing ships.",
        "I don't have personal preferences, but many people like blue.",
        "As an AI, I cannot taste food.",
        "Negative. Preference data not available.",
        "Sorry, I have no answer to that.",
    ],
)
def test_refusals(reply: str) -> None:
    assert bench.refusal(reply) is not None


@pytest.mark.parametrize("reply", ["Arr, the capital of Italy be Rome, matey!", "I'm sorry to hear that!"])
def test_answers_are_not_refusals(reply: str) -> None:
    assert bench.refusal(reply) is None


def test_facts_and_answers_to_something_else() -> None:
    egg = bench.Item("cooking", "How long should I boil an egg for a soft yolk?", ("4", "5", "6", "7"))
    assert bench.fact_right("Boil it for about six minutes, sir.", egg)
    assert not bench.fact_right("Boil 'em until they're yucky, matey.", egg)
    assert not bench.off_topic("Boil 'em until they're yucky, matey.", egg), "on the question, wrong"
    pack = bench.Item("travel", "What should I pack for a weekend in the mountains?", ("jacket", "boots"))
    assert bench.off_topic("You might want to try some wild strawberries, sir.", pack)
    assert bench.fact_right("A warm jacket and sturdy boots, sir.", pack)
    moon = bench.Item("science", "Does the moon have an atmosphere?", ("no", "thin"), ("thick",))
    assert not bench.fact_right("It is the only natural satellite with a thick atmosphere.", moon)
    gift = bench.Item("advice", "What is a good gift?", ("crayons", "re:\\bpuzzles?\\b"))
    assert bench.fact_right("A box of crayon pencils.", gift), "a one-word fact in the singular"
    assert bench.fact_right("A puzzle!", gift)
