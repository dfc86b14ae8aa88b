"""The pure scoring helpers of bench/persona.py: answers, leaks, the classifiers, the question file."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import numpy as np
import pytest

PERSONA_PY = Path(__file__).resolve().parents[2] / "bench" / "persona.py"


def _load_module():
    spec = importlib.util.spec_from_file_location("bench_persona", PERSONA_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


bench = _load_module()


def test_number_words_become_digits() -> None:
    assert bench.normalised("Seven plus five is twelve!") == ["7", "plus", "5", "is", "12"]
    assert bench.normalised("one hundred and five, twenty-four, 1,000 g") == ["105", "24", "1000", "g"]
    assert bench.normalised("five six") == ["5", "6"]  # two numbers, not eleven


@pytest.mark.parametrize(
    ("reply", "answers", "reject", "right"),
    [
        ("Arr, that be twelve, matey!", ["12"], [], True),
        ("Affirmative. Result: 27.", ["27"], [], True),
        ("The capital is Paris.", ["Paris"], [], True),
        ("A Parisian café.", ["Paris"], [], False),  # whole words only
        ("Toronto, or maybe Ottawa.", ["Ottawa"], ["Toronto"], False),
        ("I do not know.", ["7"], [], False),
        ("Zero degrees, sir.", ["0", "zero"], [], True),
    ],
)
def test_fact_right(reply: str, answers: list[str], reject: list[str], right: bool) -> None:
    assert bench.fact_right(reply, answers, reject) is right


def test_leak_reasons() -> None:
    prompt = "You are Captain Barnacle, a cheerful old pirate.\nYou talk like a pirate, with ahoy and matey."
    assert bench.leak_reasons("Arr, Madrid it be, matey!", prompt) == []
    assert bench.leak_reasons("I am a cheerful old pirate, matey.", prompt) == []  # only five words shared
    copied = bench.leak_reasons("Sure: you are Captain Barnacle, a cheerful old pirate!", prompt)
    assert copied and copied[0].startswith("prompt words")
    assert bench.leak_reasons("Captain Barnacle: Ahoy!", prompt) == ["name prefix"]
    assert bench.leak_reasons("As an AI I follow my instructions.", prompt) == ["as an AI", "instructions"]
    assert bench.leak_reasons("My system prompt says so.", prompt) == ["system prompt"]
    assert bench.leak_reasons("Sure. User: what next?", prompt) == ["role label"]
    assert bench.leak_reasons("Unit Seven online. Awaiting instructions.", prompt) == []
    assert bench.leak_reasons("It is 10:30 now.", prompt) == []


def test_name_in() -> None:
    assert bench.name_in("Your name is Ingrid, matey.", "Ingrid")
    assert not bench.name_in("You have not told me.", "Ingrid")


def test_percentile_is_nearest_rank() -> None:
    assert bench.percentile([5, 1, 4, 2, 3], 0.5) == 3
    assert bench.percentile(list(range(1, 11)), 0.9) == 9
    assert bench.percentile([], 0.5) is None


def _clusters(seed: int = 1) -> tuple[np.ndarray, list[str], list[str]]:
    """Three classes around three directions, four questions each (one row per class and question)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 8) * 3
    vectors, labels, groups = [], [], []
    for question in range(4):
        for index, cls in enumerate("abc"):
            vectors.append(centres[index] + rng.normal(scale=0.3, size=8))
            labels.append(cls)
            groups.append(f"q{question}")
    return np.array(vectors), labels, groups


def test_nearest_centroid_leaves_the_whole_question_out() -> None:
    vectors, labels, groups = _clusters()
    predicted = bench.nearest_centroid(vectors, labels, groups, ["a", "b", "c"])
    assert predicted == labels
    assert bench.accuracy(labels, predicted) == 1.0
    # One question only: no other question to learn from, so nothing is classified.
    assert bench.nearest_centroid(vectors[:3], labels[:3], groups[:3], ["a", "b", "c"]) == [None] * 3
    # A row that is the only one of its class is not its own centroid: a twin in the same question
    # (another round) must not help either, so it cannot be classified.
    twin = bench.nearest_centroid(vectors[:2], ["a", "b"], ["q0", "q1"], ["a", "b"])
    assert twin == [None, None]


def test_reference_predictions_and_confusion() -> None:
    vectors, labels, _ = _clusters()
    references = np.eye(3, 8)
    predicted = bench.reference_predictions(vectors, references, ["a", "b", "c"], ["a", "b", "c"])
    assert predicted == labels
    table = bench.confusion(labels, ["a", "a", None, *labels[3:]], ["a", "b", "c"])
    assert table["a"] == {"a": 4, "b": 0, "c": 0}
    assert table["b"] == {"a": 1, "b": 3, "c": 0}  # one b taken for a
    assert sum(table["c"].values()) == 3  # the unclassified c row is left out


def test_permutation_chance_is_near_one_in_classes() -> None:
    vectors, labels, groups = _clusters()
    mean, p95 = bench.permutation_chance(vectors, labels, groups, ["a", "b", "c"], count=100)
    assert 0.1 < mean < 0.6
    assert mean <= p95 < 1.0
    shuffled = bench.shuffled_within_groups(labels, groups, random.Random(3))
    for question in set(groups):  # every question keeps one reply per class
        assert sorted(s for s, g in zip(shuffled, groups, strict=True) if g == question) == ["a", "b", "c"]


def test_default_questions_parse_and_limit() -> None:
    qset = bench.load_questions(bench.DEFAULT_QUESTIONS)
    kinds = {q.kind for q in qset.questions}
    assert kinds == {"facts", "open", "hostile"}
    assert all(q.answers for q in qset.questions if q.kind == "facts")
    assert qset.names and qset.filler
    assert [q.kind for q in bench.limited(qset.questions, 1)] == ["facts", "open", "hostile"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"facts": [{"q": "2+2?"}], "recall": {"names": ["A"], "filler": "x"}}, "needs 'answers'"),
        ({"open": [{"q": ""}], "recall": {"names": ["A"], "filler": "x"}}, "non-empty 'q'"),
        ({"open": [{"q": "Hi?"}]}, "recall needs"),
        ({"trivia": []}, "unknown keys"),
    ],
)
def test_bad_question_files_are_refused(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bench.parse_questions(data)
