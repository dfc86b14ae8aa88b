"""Sentence and first-clause boundaries shared by the persona agent and the TTS."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from wyoming_persona.sentences import (
    ABBREVIATIONS,
    SentenceBuffer,
    ends_sentence,
    first_clause,
    first_clause_end,
    first_phrase_end,
    split_sentences,
    take_early_piece,
)


def streamed(chunks: list[str]) -> list[str]:
    """Sentences of streamed chunks, stripped."""
    buffer = SentenceBuffer()
    pieces = [piece for chunk in chunks for piece in buffer.add(chunk)]
    return [piece.strip() for piece in [*pieces, buffer.finish()] if piece.strip()]


def words(text: str) -> list[str]:
    """Chunks the way an LLM streams them: each word with the space before it."""
    return re.findall(r"\s*\S+|\s+$", text)


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("Ask Dr. Smith. He knows.", ["Ask Dr. Smith.", "He knows."]),
        ("Mrs. Jones and Prof. Brown met St. John vs. Mr. Lee.", None),
        ("Use approx. five cups, etc. Then stir.", ["Use approx. five cups, etc. Then stir."]),
        ("It is the law in the U.S. and in Canada.", None),
        ("Bring fruit, e.g. apples. Or i.e. pears.", ["Bring fruit, e.g. apples.", "Or i.e. pears."]),
        ("It costs $29.95 today. Cheap!", ["It costs $29.95 today.", "Cheap!"]),
        (
            "Take room No. 5 please. I said no. Then I left.",
            ["Take room No. 5 please.", "I said no.", "Then I left."],
        ),
        ("John F. Kennedy spoke. People listened.", ["John F. Kennedy spoke.", "People listened."]),
        ("Wait... what was that? Hmm… Never mind.", ["Wait... what was that?", "Hmm…", "Never mind."]),
        ("Really?! No way.", ["Really?!", "No way."]),
        ('He said "go away." Then he left.', ['He said "go away."', "Then he left."]),
        ("¿Qué tal? ¡Muy bien! Gracias.", ["¿Qué tal?", "¡Muy bien!", "Gracias."]),
        ("Visit example.com today. Bye.", ["Visit example.com today.", "Bye."]),
        ("Here:\n1. Dr. Smith\n2. The nurse.", ["Here:", "1. Dr. Smith", "2. The nurse."]),
        (
            "Run this:\n```\nx = 1. Y = 2\nprint(x)\n```\nDone.",
            ["Run this:", "```\nx = 1. Y = 2\nprint(x)\n```", "Done."],
        ),
    ],
)
def test_sentence_boundaries(text: str, sentences: list[str] | None) -> None:
    expected = sentences or [text]
    assert split_sentences(text) == expected
    assert streamed(words(text)) == expected


def test_streamed_text_that_clearly_ends_a_sentence_goes_at_once() -> None:
    """Whole, a lowercase word after "!" continues the sentence; streamed, "Stop!" need not wait for it."""
    assert split_sentences('"Stop!" she said. Fine.') == ['"Stop!" she said.', "Fine."]
    assert streamed(words('"Stop!" she said. Fine.')) == ['"Stop!"', "she said.", "Fine."]


def test_abbreviations_of_both_former_lists() -> None:
    """The agent's and the TTS's lists, now one: none of them ends a sentence before a name."""
    for word in ("mr", "mrs", "ms", "dr", "st", "vs", "etc", "jr", "sr", "prof", "approx"):
        assert word in ABBREVIATIONS
        text = f"Ask {word.capitalize()}. Smith about it."
        assert split_sentences(text) == [text], word
        assert not ends_sentence(f"Ask {word.capitalize()}.")
    for dotted in ("e.g.", "i.e.", "U.S.", "a.m."):
        assert split_sentences(f"It is {dotted} Fine.") == [f"It is {dotted} Fine."]


def test_other_scripts() -> None:
    assert split_sentences("你好。今天天气很好！我们走吧？") == ["你好。", "今天天气很好！", "我们走吧？"]
    assert split_sentences("「行こう！」と言った。そうだね。") == ["「行こう！」と言った。", "そうだね。"]
    assert split_sentences("「行こう！」そうだね。") == ["「行こう！」", "そうだね。"]
    assert split_sentences("नमस्ते। आप कैसे हैं?") == ["नमस्ते।", "आप कैसे हैं?"]
    assert split_sentences("مرحبا؟ كيف حالك.") == ["مرحبا؟", "كيف حالك."]
    assert split_sentences("Привет. Как дела? всё хорошо.") == ["Привет.", "Как дела? всё хорошо."]


def test_a_chunk_boundary_inside_a_number_or_abbreviation_waits() -> None:
    buffer = SentenceBuffer()
    assert buffer.add("It costs $29.") == []
    assert buffer.add("95 today.") == ["It costs $29.95 today."]
    assert buffer.add(" Ask Dr.") == []
    assert buffer.add(" ") == []
    assert buffer.add("Smith, he knows") == []
    assert buffer.add(". Bye") == [" Ask Dr. Smith, he knows."]
    assert buffer.add(" 1,") == []
    assert buffer.add("000 times. ") == [" Bye 1,000 times. "]
    assert buffer.finish() == ""


def test_a_streamed_cjk_stop_waits_for_a_closing_quote() -> None:
    buffer = SentenceBuffer()
    assert buffer.add("「行こう！") == []
    assert buffer.add("」") == []
    assert buffer.add("と言った。") == []
    assert buffer.add("次") == ["「行こう！」と言った。"]


def test_pieces_keep_every_character() -> None:
    text = "**Ahoy** matey!  Here:\n\n1. Dr. Smith is *here*\n2. See https://example.com/x now.\n# Done"
    buffer = SentenceBuffer()
    pieces = [piece for char in text for piece in buffer.add(char)]
    assert "".join([*pieces, buffer.finish()]) == text
    assert [p.strip() for p in pieces if p.strip()][:3] == [
        "**Ahoy** matey!",
        "Here:",
        "1. Dr. Smith is *here*",
    ]


@pytest.mark.parametrize(
    ("chunk", "ends"),
    [
        ("I can do anything.", True),
        ("Really?", True),
        ("Really?! ", True),
        ('He said "go away!"', True),
        ("नमस्ते।", True),
        ("Ask Dr.", False),
        ("Room No.", False),
        ("It costs 29.", False),
        ("for e.g.", False),
        ("in the U.S.", False),
        ("and so on", False),
        ("Wait...", False),
        ("你好。", False),  # a closing quote may still follow
    ],
)
def test_a_streamed_chunk_that_clearly_ends_a_sentence(chunk: str, ends: bool) -> None:
    assert ends_sentence(chunk) is ends


def test_first_clause_at_punctuation_and_conjunction() -> None:
    """A phrase cut before a conjunction or preposition gets no comma: the text has none there."""
    assert first_clause("Sure, I've turned on the kitchen lights and set the heating.") == (
        "Sure,",
        "I've turned on the kitchen lights and set the heating.",
    )
    assert first_clause("I've turned on the kitchen lights and set the thermostat to twenty.") == (
        "I've turned on the kitchen lights",
        "and set the thermostat to twenty.",
    )
    assert first_clause("It is half past four in the afternoon.") == (
        "It is half past four",
        "in the afternoon.",
    )
    assert first_clause("Short one, really.") is None
    assert first_clause("A sentence without any clause boundary that just goes on.") is None


@pytest.mark.parametrize(
    ("text", "min_chars", "clause"),
    [
        ("Sure, I have", 4, "Sure,"),
        ("Sure,", 4, "Sure,"),  # the mark ends the clause: it goes at once, before the next word
        ("Sure, ", 4, "Sure,"),
        ("Sure,", 20, None),  # too short for this caller
        ("You can answer questions,", 4, "You can answer questions,"),  # a long one goes at once
        ("You can answer questions,", 20, "You can answer questions,"),
        ("Sure, it is on", 20, None),
        ("Sure, I have turned the lights on, and", 20, "Sure, I have turned the lights on,"),
        ("The bridge is about 1,", 4, None),  # "1," may be the start of "1,000"
        ("The bridge is about 1,000 miles", 4, None),
        ("Hi there. Bye, all", 4, None),  # the clause must be in the first sentence
        ("Ask Dr. Smith, he knows", 4, "Ask Dr. Smith,"),
        ("It is big — really big", 4, "It is big —"),
        ("See:\n```\na, b = 1, 2\n```", 4, None),
    ],
)
def test_first_clause_of_a_sentence_being_written(text: str, min_chars: int, clause: str | None) -> None:
    end = first_clause_end(text, min_chars)
    assert (None if end is None else text[:end]) == clause


def test_any_chunking_gives_the_same_sentences() -> None:
    """Chunk boundaries anywhere but right after sentence punctuation change nothing, and lose nothing."""
    text = (
        "Ask Dr. Smith about it. It costs $29.95, see No. 5.\n1. Foo\n2. Bar\nRun:\n```\na. B\n```\n"
        "Done! Mr. and Mrs. Lee went to the U.S. in 2020. They loved it... Really?! ¿Qué? 你好。再见。"
    )
    whole = split_sentences(text)
    cuttable = [i for i in range(1, len(text)) if text[i - 1] not in ".!?…\"'。"]
    rng = random.Random(5)
    for _ in range(200):
        cuts = sorted(rng.sample(cuttable, rng.randint(1, 30)))
        chunks = [text[a:b] for a, b in itertools.pairwise([0, *cuts, len(text)])]
        buffer = SentenceBuffer()
        pieces = [piece for chunk in chunks for piece in buffer.add(chunk)] + [buffer.finish()]
        assert "".join(pieces) == text
        assert [p.strip() for p in pieces if p.strip()] == whole, chunks


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("The sky is blue because of", "The sky is blue"),
        ("The sky is blue because", None),  # "because" may still become "becauses": wait for a space
        ("Start your morning with a", None),  # three words are a noun phrase, not a clause
        (
            "Start your morning with a healthy breakfast and some",
            "Start your morning with a healthy breakfast",
        ),
        ("The ocean is the largest body of water on Earth", "The ocean is the largest body of water"),
        ("It costs about 5 and", None),  # a number may go on ("5 and a half")
        ("Hi. The sky is blue because of", None),  # a complete sentence goes whole
        ("See:\n```\nprint(a) and b for c\n```", None),
    ],
)
def test_first_phrase_of_a_sentence_being_written(text: str, phrase: str | None) -> None:
    end = first_phrase_end(text)
    assert (None if end is None else text[:end]) == phrase


def test_a_first_sentence_streams_clause_by_clause_and_loses_nothing() -> None:
    """Taken off the buffer token by token: a first phrase, then clauses of 20+ characters; joined,
    the pieces and the rest are the text."""
    text = "The sky is blue because of light in the air, such as dust, water droplets, and ice."
    buffer = SentenceBuffer()
    pieces = []
    for token in re.findall(r"\s*\S+", text):
        buffer.append(token)
        while (piece := take_early_piece(buffer, first=not pieces)) is not None:
            pieces.append(piece)
    assert [(p.text, p.is_phrase) for p in pieces] == [
        ("The sky is blue", True),
        (" because of light in the air,", False),
        (" such as dust, water droplets,", False),
    ]
    assert "".join(p.text for p in pieces) + buffer.finish() == text
