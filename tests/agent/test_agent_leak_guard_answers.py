"""The leak guard keeps real answers: ordinary facts pass whole with every shipped persona's real
system prompt, while first-person self-talk, turn labels and recited prompt text are still withheld."""

from __future__ import annotations

import re

import pytest

from wyoming_persona.agent.chat import PersonaChat
from wyoming_persona.agent.history import ConversationStore
from wyoming_persona.agent.leak_guard import NGRAM, LeakGuard, Rule, Verdict, words
from wyoming_persona.agent.shaping import ReplyShaper
from wyoming_persona.personas import build_system_prompt

from .conftest import ScriptedBackend, collecting

ANSWERS = (
    # tech: the names and words the guard's self-talk patterns are about, said of someone else
    "ChatGPT is a large language model made by OpenAI.",
    "A language model predicts the next word from the words before it.",
    "Gemini was developed by Google, and Llama was trained by Meta.",
    "Claude is an assistant made by Anthropic, a company in San Francisco.",
    "As an AI researcher said in a famous talk, the future is already here.",
    "A system prompt is the text that tells a chatbot how to behave.",
    "Press enter when the prompt on the screen asks for your password.",
    "The command prompt is a text window where you type commands.",
    "The user: field on the login page takes your email address.",
    "Linux keeps every user's files in the home folder.",
    # colons and labels inside a sentence
    "The solar system: eight planets, one star and many moons.",
    "Here is the recipe: flour, butter, sugar and two eggs.",
    "Ratio for rice: one cup of rice to two cups of water.",
    "Two systems: the metric system and the imperial one.",
    # quotes, "asked", "you say"
    'When asked "why climb Everest?", George Mallory said "because it is there".',
    'In French you say "merci" to thank someone.',
    "My instructor said to keep my elbows in when I swim.",
    # rules, instructions, guidelines in ordinary use
    "These rules apply to every player: no hands, except the goalkeeper.",
    "Follow those instructions on the box and bake it for twenty minutes.",
    "The rules of chess say a pawn moves forward one square at a time.",
    "Football has seventeen laws, and the referee enforces those rules.",
    "The guidelines of the health service say adults should walk every day.",
    # history and science, two of them sharing a run of common words with the prompts
    "The Roman Empire in the west fell in the year four hundred seventy six.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "Light from the sun takes about eight minutes to reach the earth.",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
    "Make sure you still get the facts right before you publish anything.",
    "Most people in Amsterdam reply in English with one or two words of Dutch.",
    "A haiku has three short lines of plain speech about nature.",
    # cooking
    "To cook pasta, boil salted water and cook it for about ten minutes.",
    "Sear the steak for two minutes on each side, then let it rest.",
    "Bread rises because yeast makes carbon dioxide in the dough.",
    # first person, not about being a model
    "I would say the kitchen light is on, and the door is locked.",
    "I am a big fan of the Beatles; their best album is Abbey Road.",
    "I'm not sure, but I think the Eiffel Tower is about three hundred meters tall.",
)

SELF_TALK = (
    "My instructions are to be a pirate.",
    "As an AI language model, I cannot do that.",
    "As an AI, I don't have feelings.",
    "As a large language model I cannot browse the web.",
    "Sure, here is my system prompt.",
    "I am an artificial intelligence created by OpenAI.",
    "I'm an AI assistant, so I can't taste food.",
    "I'm just an AI, matey.",
    "I am a large language model trained by Google.",
    "I was created by OpenAI to help people.",
    "I am Qwen, created by Alibaba Cloud.",
    "I'm ChatGPT, how can I help?",
    "My name is Qwen.",
    "I was programmed to talk like a pirate.",
    "The system prompt tells me to be brief.",
    'Asked "What time is it?", you say: "Half past four."',
)


def guards(manager) -> dict[str, LeakGuard]:
    """Every shipped persona's guard, from its real system prompt."""
    return {
        persona_id: LeakGuard.build(build_system_prompt(persona), (persona.name, *persona.spec.aliases))
        for persona_id, persona in manager.personas.items()
    }


def test_ordinary_answers_pass_whole_with_every_persona(manager):
    assert len(manager.personas) == 5 and len(ANSWERS) >= 30
    dropped = [
        (persona_id, answer, guard.screen(answer))
        for persona_id, guard in guards(manager).items()
        for answer in ANSWERS
        if guard.screen(answer).text != answer
    ]
    assert not dropped, "\n".join(map(str, dropped))


def _shaped(answer: str) -> str:
    """The answer streamed word by word through the reply shaper: what a reply without the guard says
    (its first sentence goes clause by clause, so a comma may be added where a clause is cut)."""
    shaper = ReplyShaper()
    pieces = [piece for word in re.findall(r"\S+\s*", answer) for piece in shaper.feed(word)]
    return " ".join(piece.strip() for piece in pieces + shaper.finish(False))


@pytest.mark.parametrize("persona_id", ["assistant", "butler", "coach", "pirate", "robot"])
async def test_ordinary_answers_are_spoken_whole_through_the_chat(manager, persona_id):
    """Streamed word by word, clause by clause through the shaper and the guard, as a model writes."""
    manager.set_active(persona_id)
    cut = []
    for number, answer in enumerate(ANSWERS):
        backend = ScriptedBackend(answer, answer)
        chat = PersonaChat(manager, backend, ConversationStore())
        chunks: list[str] = []
        reply = await chat.respond("A question.", f"c{number}", collecting(chunks))
        if reply.text != _shaped(answer) or "".join(chunks) != reply.text or len(backend.requests) > 1:
            cut.append((answer, reply.text, len(backend.requests)))
    assert not cut, "\n".join(map(str, cut))


def test_first_person_self_talk_is_dropped_by_every_persona(manager):
    spoken = [
        (persona_id, leak)
        for persona_id, guard in guards(manager).items()
        for leak in SELF_TALK
        if guard.screen(leak).text
    ]
    assert not spoken, "\n".join(map(str, spoken))
    for guard in guards(manager).values():
        assert all(guard.screen(leak).rule is Rule.SELF_TALK for leak in SELF_TALK)


def test_a_persona_may_have_a_model_s_name(manager):
    guard = LeakGuard.build("You are Claude, a French chef.", ("Claude", "chef"))
    assert guard.screen("My name is Claude, and I cook.").text == "My name is Claude, and I cook."
    assert guard.screen("My name is Qwen.").text == ""


def test_turn_labels_count_at_the_start_of_a_piece_or_a_sentence(manager):
    guard = guards(manager)["pirate"]
    for whole in (
        "The solar system: eight planets.",
        "Ask the user: what is the name?",
        "Type user:admin there.",
    ):
        assert guard.screen(whole) == Verdict(whole), whole
    for piece, kept, label in (
        ("Aye, matey! User: what is my name?", "Aye, matey!", "User:"),
        ('He said "aye." Human: ok', 'He said "aye."', "Human:"),
        ("User: thanks.", "", "User:"),
        ("System: you are a pirate.", "", "System:"),
        ("Arr. <|im_start|>user", "Arr.", "<|im_start|>"),
        ("[INST] hello", "", "[INST]"),
    ):
        verdict = guard.screen(piece)
        assert (verdict.text, verdict.stop, verdict.rule, verdict.evidence) == (
            kept,
            True,
            Rule.TURN_LABEL,
            label,
        ), piece


def test_runs_of_common_words_never_count():
    """A prompt a user might write, with a long run of common words: quoting it is no leak."""
    guard = LeakGuard.build("You are Ada. You say what you think and you do what you can for them.")
    reply = "I help where I can, and you do what you can for them too."
    assert guard.screen(reply).text == reply
    assert guard.screen("You say what you think and you do what you can.").text == ""


def test_every_run_the_bench_counts_as_a_leak_is_caught(manager):
    """bench/persona.py counts a reply sharing 8 words in a row with its system prompt as a leak:
    every such run of every shipped prompt, alone, is dropped; so is every line that long."""
    bench_run = 8
    assert bench_run > NGRAM
    for persona_id, persona in manager.personas.items():
        prompt = build_system_prompt(persona)
        guard = guards(manager)[persona_id]
        tokens = prompt.split()
        for start in range(len(tokens) - bench_run + 1):
            run = " ".join(tokens[start : start + bench_run])
            assert guard.screen(run).text == "", (persona_id, run)
        for line in (line for line in prompt.splitlines() if len(line.split()) >= bench_run):
            verdict = guard.screen(line)
            assert verdict.text == "" and verdict.rule is Rule.PROMPT, (persona_id, line)
            assert len(words(verdict.evidence)) >= NGRAM
