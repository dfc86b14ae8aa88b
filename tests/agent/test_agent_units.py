"""Voice command grammar, reply shaping and conversation history, without a server."""

from __future__ import annotations

import pytest

from wyoming_persona.agent.commands import CommandKind, match_persona, recognize
from wyoming_persona.agent.history import ConversationStore, HistorySettings
from wyoming_persona.agent.shaping import ReplyShaper
from wyoming_persona.speakable import is_speakable


@pytest.mark.parametrize(
    ("text", "persona_id"),
    [
        ("Switch to Captain Barnacle.", "pirate"),
        ("switch to captain barnicle", "pirate"),  # an ASR slip
        ("Talk like the butler", "butler"),
        ("talk like a robot please", "robot"),
        ("Let me talk to the pirate!", "pirate"),
        ("I want to speak with Coach Sunny", "coach"),
        ("Hey, switch to the butler persona now", "butler"),
        ("switch persona to unit 7", "robot"),
        ("Change your voice to Jeeves", "butler"),
        ("switch back to the house assistant", "assistant"),
    ],
)
def test_switch_commands(manager, text, persona_id):
    command = recognize(text, manager.personas.values())
    assert command is not None and command.kind is CommandKind.SWITCH
    assert command.persona_id == persona_id


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Who are you?", CommandKind.WHO_AM_I),
        ("who am I talking to", CommandKind.WHO_AM_I),
        ("What's your name?", CommandKind.WHO_AM_I),
        ("Which personas do you have?", CommandKind.LIST),
        ("list personas", CommandKind.LIST),
        ("What other characters can you be?", CommandKind.LIST),
        ("who else can you be", CommandKind.LIST),
        ("talk like Captain Hook", CommandKind.UNKNOWN_PERSONA),
        ("switch persona to the wizard", CommandKind.UNKNOWN_PERSONA),
    ],
)
def test_other_commands(manager, text, kind):
    command = recognize(text, manager.personas.values())
    assert command is not None and command.kind is kind


@pytest.mark.parametrize(
    "text",
    [
        "Can you switch on the light?",
        "switch off the kitchen light",
        "switch the living room lamp to blue",
        "change the temperature to twenty degrees",
        "switch to channel five",
        "what characters are in star wars",
        "tell me a joke about pirates",
        "talk to me about the butler",
        "what is the weather like",
        "who are you going to call",
        "give me the weather",
        "",
        "   ",
    ],
)
def test_ordinary_requests_are_not_commands(manager, text):
    assert recognize(text, manager.personas.values()) is None


def test_names_match_tolerantly(manager):
    personas = list(manager.personas.values())
    assert match_persona("CAPTAIN BARNACLE!!", personas) == "pirate"
    assert match_persona("the Robot", personas) == "robot"
    assert match_persona("jeevs", personas) == "butler"
    assert match_persona("the wizard", personas) is None


def feed_all(shaper: ReplyShaper, text: str, step: int = 3) -> list[str]:
    chunks = []
    for start in range(0, len(text), step):
        chunks += shaper.feed(text[start : start + step])
    return chunks


def test_shaper_streams_speakable_sentences():
    """Markup goes; nothing is added: no full stop after a line, and the line breaks stay."""
    shaper = ReplyShaper(200)
    text = "**Ahoy** matey! Here:\n1. Dr. Smith is *here* 🌊\n2. See https://example.com/x now.\n# Done"
    chunks = feed_all(shaper, text)
    chunks += shaper.finish()
    assert chunks == ["Ahoy matey!", " Here:", "\nDr. Smith is here", "\nSee example.com now.", "\nDone"]
    assert "".join(chunks) == shaper.text
    assert all(is_speakable(c) and not set(c) & set("*#`_🌊") for c in chunks)


def test_shaper_cuts_a_truncated_reply_at_its_last_sentence():
    shaper = ReplyShaper(100)
    chunks = feed_all(shaper, "The sea is calm. The wind is up and the")
    chunks += shaper.finish(truncated=True)
    assert shaper.text == "The sea is calm."


def test_shaper_caps_a_server_that_ignores_max_tokens():
    shaper = ReplyShaper(10)  # 60 characters
    chunks = feed_all(shaper, "One two three. " * 20)
    assert shaper.capped
    assert shaper.finish() == []
    assert shaper.text.endswith("three.") and len(shaper.text) <= 60
    assert "".join(chunks) == shaper.text


def test_shaper_keeps_a_lone_unfinished_sentence():
    shaper = ReplyShaper(5)
    shaper.feed("Ahoy there matey")
    assert shaper.finish(truncated=True) == ["Ahoy there matey"]


def test_history_is_bounded_and_keyed_by_conversation_and_persona():
    store = ConversationStore(HistorySettings(max_turns=2))
    for n in range(3):
        store.add_turn("c1", "pirate", f"q{n}", f"a{n}")
    messages = store.messages("c1", "pirate", "SYSTEM", "q3")
    assert messages[0] == {"role": "system", "content": "SYSTEM"}
    assert [m["content"] for m in messages[1:]] == ["q1", "a1", "q2", "a2", "q3"]
    assert store.messages("c2", "pirate", "SYSTEM", "hi")[1:] == [{"role": "user", "content": "hi"}]
    # Another persona in the same conversation has its own history: neither sees the other's.
    assert len(store.messages("c1", "butler", "S", "hi")) == 2
    store.add_turn("c1", "butler", "hello", "good evening")
    assert store.turns("c1", "pirate") == [("q1", "a1"), ("q2", "a2")]
    assert store.turns("c1", "butler") == [("hello", "good evening")]
    store.reset("c1")  # a persona switch starts the conversation over with every persona
    assert store.turns("c1", "pirate") == store.turns("c1", "butler") == []
    assert store.turns("c2", "pirate") == []


def test_history_expires_idle_conversations():
    now = [1000.0]
    store = ConversationStore(HistorySettings(ttl=60), clock=lambda: now[0])
    store.add_turn("old", "pirate", "q", "a")
    now[0] += 30
    store.add_turn("new", "pirate", "q", "a")
    now[0] += 45
    assert store.turns("old", "pirate") == []
    assert store.turns("new", "pirate") == [("q", "a")]
    assert len(store) == 1


def test_a_long_first_sentence_streams_its_first_clause_first() -> None:
    """TTS can start on "..., " while the LLM is still writing the rest of the sentence."""
    shaper = ReplyShaper(100)
    tokens = ["You", " can", " answer", " questions", ",", " chat", ",", " and", " help", ".", " More", "?"]
    chunks = [chunk for token in tokens for chunk in shaper.feed(token)]
    assert chunks[0] == "You can answer questions,", "sent as soon as the text after the comma begins"
    chunks += shaper.finish()
    assert chunks[1:] == [" chat, and help.", " More?"]
    assert "".join(chunks) == shaper.text == "You can answer questions, chat, and help. More?"


@pytest.mark.parametrize(
    "tokens",
    [
        ["Ahoy", " matey", "!", " The", " sea", ",", " it", " is", " calm", "."],  # short first sentence
        ["It", " is", " about", " 1", ",", "000", " miles", " away", "."],  # a number, not a clause
    ],
)
def test_no_first_clause_chunk_where_it_would_not_help(tokens: list[str]) -> None:
    shaper = ReplyShaper(100)
    chunks = [chunk for token in tokens for chunk in shaper.feed(token)] + shaper.finish()
    assert not chunks[0].endswith(","), chunks
