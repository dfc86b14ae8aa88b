"""What the user reads and hears is what the model wrote: no comma, full stop or word added.

On the wire: a model stream from the in-test Ollama and OpenAI-compatible servers (their real formats),
through the persona service over Wyoming (what Home Assistant receives: handled-chunks and handled),
and those chunks into the TTS's sentence splitter (the pieces Piper speaks, as our TTS server cuts a
synthesize-chunk stream). The replies are the issue's: "Boil an egg for, about 5 minutes" was shown
and spoken when the first phrase was cut with a comma.
"""

from __future__ import annotations

import re

import pytest

from wyoming_persona.agent.backends.openai import OpenAIChatBackend
from wyoming_persona.agent.backends.settings import OpenAISettings
from wyoming_persona.tts.text import SentenceSplitter, pauses_after

from .conftest import assert_stream_order, handled, persona_server, say
from .test_agent_ollama import ollama

# Each model stream is whole sentences within the two-sentence limit: the reply is all of it.
STREAMS = [
    ["Boil", " an", " egg", " for", " about", " 5", " minutes", "."],
    ["The", " sun", " is", " about", " 93", " million", " miles", " away", " from", " the", " Earth", "."],
    ["The", " word", " '", "orange", "'", " rhymes", " with", " nothing", " at", " all", "."],
    ["Arr", ",", " ye", " boil", " it", " for", " six", " minutes", " and", " then", " cool", " it"],
    ["Very", " good", ",", " sir", ".", " The", " eggs", " want", " six", " minutes", " in", " the", " pot"],
    ["雨", "が", "降", "って", "いる", "。", "傘", "を", "持", "って", "。"],
]
_MARKS = re.compile(r"\w+|[^\w\s]")


def marks(text: str) -> list[str]:
    """The words and punctuation marks of a text, in order (spaces left out)."""
    return _MARKS.findall(text)


def spoken_pieces(chunks: list[str]) -> list[str]:
    """What our TTS synthesizes, piece by piece, from these synthesize-chunks."""
    splitter = SentenceSplitter()
    sentences = [s for chunk in chunks for s in splitter.add(chunk)] + list(splitter.finish())
    return [piece for sentence in sentences for piece in sentence.pieces]


def openai(fake) -> OpenAIChatBackend:
    return OpenAIChatBackend(OpenAISettings(base_url=fake.url, model="test-model"))


@pytest.mark.parametrize("stream", STREAMS, ids=lambda s: "".join(s)[:24])
@pytest.mark.parametrize("server", ["ollama", "openai"])
async def test_ha_and_the_tts_get_exactly_what_the_model_wrote(
    server, stream, fake_ollama, fake_openai, manager
):
    fake = fake_ollama if server == "ollama" else fake_openai
    fake.reply = stream
    backend = ollama(fake) if server == "ollama" else openai(fake)
    manager.set_active("butler")
    async with persona_server(manager, backend) as (wyoming, _):
        events = await say(wyoming.port, "How long should I boil an egg?", "wire")
    await backend.close()

    assert_stream_order(events)  # the chunks joined are the handled text
    written = "".join(stream)
    assert handled(events).data["text"] == written
    chunks = [e.data["text"] for e in events if e.type == "handled-chunk"]
    assert len(chunks) > 1 or len(written) < 40, "a long first sentence still goes out in pieces"
    pieces = spoken_pieces(chunks)
    assert marks(" ".join(pieces)) == marks(written), pieces


async def test_a_phrase_cut_gets_no_comma_and_is_spoken_at_once(fake_ollama, manager):
    """The first phrase goes ahead for speed, with the word that ends it ("Boil an egg for about"):
    the TTS speaks "Boil an egg for" from that chunk alone, without a comma (and joins it to the rest
    without a comma's pause: tests/tts/test_joins.py). A real comma keeps its pause."""
    fake_ollama.reply = STREAMS[0]
    backend = ollama(fake_ollama)
    async with persona_server(manager, backend) as (wyoming, _):
        events = await say(wyoming.port, "How long should I boil an egg?")
    await backend.close()
    chunks = [e.data["text"] for e in events if e.type == "handled-chunk"]
    assert chunks == ["Boil an egg for about", " 5 minutes."]
    splitter = SentenceSplitter()
    first = [s.pieces for s in splitter.add(chunks[0])]
    assert first == [("Boil an egg for",)], "spoken before the rest of the sentence arrives"
    assert not pauses_after(first[0][0])
    assert pauses_after("Very good,") and pauses_after("It is big —") and not pauses_after("Done.")


async def test_a_reply_cut_at_the_sentence_limit_is_the_model_text_up_to_there(fake_ollama, manager):
    reply = "Madrid it is, sir. A fine city indeed. Shall I go on"
    fake_ollama.reply = re.findall(r"\S+\s*", reply)
    backend = ollama(fake_ollama)
    async with persona_server(manager, backend) as (wyoming, _):
        text = handled(await say(wyoming.port, "What is the capital of Spain?")).data["text"]
    await backend.close()
    assert text == "Madrid it is, sir. A fine city indeed."


async def test_markup_is_taken_out_and_nothing_put_in(fake_ollama, manager):
    fake_ollama.reply = [
        "**Paris**",
        " is",
        " the",
        " capital",
        " 🇫🇷",
        "\n",
        "-",
        " It",
        " has",
        " the",
        " Eiffel",
    ]
    fake_ollama.reply += [" Tower"]
    backend = ollama(fake_ollama)
    async with persona_server(manager, backend) as (wyoming, _):
        text = handled(await say(wyoming.port, "What is the capital of France?")).data["text"]
    await backend.close()
    assert text == "Paris is the capital\nIt has the Eiffel Tower"
