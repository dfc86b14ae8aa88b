"""Sentence pieces and voice effects without a model."""

from __future__ import annotations

import numpy as np

from wyoming_persona.tts.effects import apply_volume, pitch_shift, resample
from wyoming_persona.tts.text import SentenceSplitter, cut_long

from .conftest import median_f0


def test_only_the_first_sentence_is_cut_and_nothing_is_lost() -> None:
    text = "Well, the lights are on in the kitchen now. Also, the door is locked, as you asked."
    sentences = list(SentenceSplitter().split(text))
    assert [s.pieces for s in sentences] == [
        ("Well,", "the lights are on in the kitchen now."),
        ("Also, the door is locked, as you asked.",),
    ]
    assert " ".join(s.text for s in sentences) == text


def test_streamed_chunks_give_the_same_sentences() -> None:
    text = "Ahoy there, matey! The tide is high. **Bold** claims 😀 and a link https://example.com/x done."
    whole = [s.text for s in SentenceSplitter().split(text)]
    splitter = SentenceSplitter()
    streamed = []
    for i in range(0, len(text), 7):
        streamed += [s.text for s in splitter.add(text[i : i + 7])]
    streamed += [s.text for s in splitter.finish()]
    assert streamed[0] == "Ahoy there,"  # streamed, the first clause goes out on its own
    assert " ".join(streamed) == " ".join(whole)
    assert "*" not in " ".join(whole) and "😀" not in " ".join(whole) and "https" not in " ".join(whole)


def test_streamed_first_clause_goes_out_before_the_sentence_ends() -> None:
    splitter = SentenceSplitter()
    first = list(splitter.add("Sure,"))  # the comma ends the clause: it goes at once
    assert [(s.pieces, s.continued, s.continues) for s in first] == [(("Sure,",), False, True)]
    assert list(splitter.add(" I have")) == []
    later = list(splitter.add(" turned the lights on, and"))  # later clauses of 20+ characters go too
    assert [(s.pieces, s.continued, s.continues) for s in later] == [
        (("I have turned the lights on,",), True, True)
    ]
    rest = list(splitter.add(" more. Next"))
    assert [(s.text, s.continued, s.continues) for s in rest] == [("and more.", True, False)]
    assert [(s.text, s.continued) for s in splitter.finish()] == [("Next", False)]

    phrase = SentenceSplitter()
    assert list(phrase.add("The sky is blue becau")) == []  # the chunk ends inside a word
    assert [s.pieces for s in phrase.add("se")] == [("The sky is blue",)]  # a chunk ends a word; no comma
    assert [s.text for s in phrase.add(" of light.")] == ["because of light."]

    no_clause = SentenceSplitter()
    assert [s.text for s in no_clause.add("Hi there. Bye")] == ["Hi there."]
    assert [s.text for s in no_clause.finish()] == ["Bye"]

    off = SentenceSplitter(split_first_clause=False)
    assert list(off.add("Sure, I have")) == []


def test_unspeakable_sentences_are_dropped() -> None:
    assert list(SentenceSplitter().split("!!! 😀 ... ?")) == []
    assert list(SentenceSplitter().split("   ")) == []


def test_long_sentence_is_cut_without_losing_words() -> None:
    sentence = ", ".join(f"item number {i}" for i in range(60)) + "."
    pieces = cut_long(sentence, 100)
    assert all(len(p) <= 100 for p in pieces)
    assert " ".join(pieces) == sentence


def _harmonic(f0: float, seconds: float = 1.5, rate: int = 22050) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8)).astype(np.float32) * 0.3


def test_pitch_shift_moves_f0_and_keeps_length() -> None:
    audio = _harmonic(120.0)
    for semitones in (-4.0, 3.0):
        shifted = pitch_shift(audio, 22050, semitones)
        assert len(shifted) == len(audio)
        ratio = median_f0((shifted * 32767).astype(np.int16), 22050) / 120.0
        assert abs(ratio / 2 ** (semitones / 12) - 1) < 0.05


def test_resample_and_volume() -> None:
    assert len(resample(np.ones(1000), 1234)) == 1234
    loud = apply_volume(np.array([0.5, 1.0, -1.0], dtype=np.float32), 1.5)
    assert np.all(np.abs(loud) < 1.0) and loud[0] == 0.75
    assert np.allclose(apply_volume(np.array([0.5], dtype=np.float32), 0.5), [0.25])


def test_a_complete_streamed_sentence_goes_out_without_waiting_for_the_next() -> None:
    splitter = SentenceSplitter()
    assert [s.text for s in splitter.add("I can do anything.")] == ["I can do anything."]
    assert [s.text for s in splitter.add(" Ask Dr.")] == []
    assert [s.text for s in splitter.add(" Smith, he knows.")] == ["Ask Dr. Smith, he knows."]
    assert [s.text for s in splitter.add(" It costs 29.")] == []
    assert [s.text for s in splitter.add("95 dollars")] == []
    assert [s.text for s in splitter.finish()] == ["It costs 29.95 dollars"]


def test_a_streamed_first_clause_is_spoken_without_waiting_for_more_text() -> None:
    splitter = SentenceSplitter()
    assert [s.pieces for s in splitter.add("You can answer questions,")] == [("You can answer questions,",)]
    assert [s.text for s in splitter.add(" chat, and help you around the house.")] == [
        "chat, and help you around the house."
    ]
    numbers = SentenceSplitter()
    assert list(numbers.add("The bridge is about 1,")) == [], "'1,' may be the start of '1,000'"
    assert [s.pieces for s in SentenceSplitter().add("Sure,")] == [("Sure,",)], "a short clause goes too"
