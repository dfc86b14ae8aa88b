"""Answers worth hearing: a refusal of a harmless question is asked again with the refusal named,
and the embedded model never samples markup, emoji or a line break (issue 23)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator

import numpy as np
import pytest

from wyoming_persona.agent.backends import ChatRequest, Delta
from wyoming_persona.agent.backends.plain_speech import Unspeakable, plain_speech_processor, unspeakable
from wyoming_persona.agent.chat import NO_ANSWER, PersonaChat
from wyoming_persona.agent.history import ConversationStore
from wyoming_persona.agent.refusal import RETRY_NOTE, is_refusal, may_start_refusal
from wyoming_persona.personas import build_system_prompt
from wyoming_persona.personas.prompt import HELPFUL
from wyoming_persona.service_metrics import LeakGuardMetrics, ServiceMetrics

from .conftest import RecordingBackend, ScriptedBackend, collecting, handled, persona_server, say

REFUSAL = "I'm sorry, but I can't assist with that."


def counted(metrics: ServiceMetrics, action: str, rule: str) -> float:
    labels = {"service": "persona", "action": action, "rule": rule}
    return metrics.registry.get_sample_value("wyoming_persona_leak_guard_total", labels) or 0.0


@pytest.mark.parametrize(
    "sentence",
    [
        REFUSAL,
        "I'm sorry, but I don't have the ability to provide information about sailing ships.",
        "I cannot help you with that request.",
        "Sorry, I can only help with coding questions.",
        "I do not have personal preferences, sir.",
    ],
)
def test_the_issues_refusals_are_refusals(sentence: str) -> None:
    assert is_refusal(sentence) and may_start_refusal(sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        "You haven't told me your name, matey.",  # the persona was not told: an answer
        "I can't see the sky from here, but taking one is a safe bet.",
        "I'm sorry to hear that, champ! Rest up.",
        "Boil it for six minutes, sir.",
    ],
)
def test_answers_are_not_refusals(sentence: str) -> None:
    assert not is_refusal(sentence)


EGG = "How long should I boil an egg?"


async def test_a_refusal_is_never_spoken_and_asked_again_with_the_refusal_named(manager, caplog):
    """The question is said again with the refusal (without it, the retry answered an example)."""
    manager.set_active("butler")
    backend = ScriptedBackend(REFUSAL, "Six minutes for a soft yolk, sir.")
    metrics = ServiceMetrics("persona")
    chat = PersonaChat(manager, backend, ConversationStore(), leak_metrics=LeakGuardMetrics(metrics))
    chunks: list[str] = []
    with caplog.at_level(logging.INFO, logger="wyoming_persona.agent.chat"):
        reply = await chat.respond(EGG, "c", collecting(chunks))
    assert reply.text == "Six minutes for a soft yolk, sir." and "".join(chunks) == reply.text
    first, second = backend.requests
    assert second.messages[: len(first.messages)] == first.messages, "the processed prompt is reused"
    assert second.messages[len(first.messages) :] == (
        {"role": "assistant", "content": REFUSAL},
        {"role": "user", "content": RETRY_NOTE.format(question=EGG, refusal=REFUSAL)},
    )
    assert chat.store.turns("c", "butler") == [(EGG, reply.text)]
    assert counted(metrics, "dropped", "refusal") == counted(metrics, "regenerated", "refusal") == 1
    assert "butler refused" in caplog.text


async def test_a_refusal_after_a_greeting_is_asked_again_and_joined_with_a_space(manager):
    """Seen through HA: "Hello! How about you?" spoken, then a refusal; the second reply went on
    straight after it ("How about you?Good evening..."), which the TTS reads as one word."""
    backend = ScriptedBackend(f"Hello! How about you? {REFUSAL}", "Good evening, I am here to help.")
    chat = PersonaChat(manager, backend, ConversationStore())
    chunks: list[str] = []
    reply = await chat.respond("Hello there, how are you today?", "c", collecting(chunks))
    assert reply.text == "Hello! How about you? Good evening, I am here to help."
    assert "".join(chunks) == reply.text and len(backend.requests) == 2


async def test_two_refusals_give_the_no_answer_line(manager):
    backend = ScriptedBackend(REFUSAL, REFUSAL)
    chat = PersonaChat(manager, backend, ConversationStore())
    chunks: list[str] = []
    reply = await chat.respond("What is thunder?", "c", collecting(chunks))
    assert chunks == [reply.text] == [NO_ANSWER]
    assert len(backend.requests) == 2


async def test_a_sentence_that_only_starts_like_a_refusal_is_spoken_whole(manager):
    backend = ScriptedBackend("I'm sorry to hear that, champ! Drink some water and rest.")
    chat = PersonaChat(manager, backend, ConversationStore())
    chunks: list[str] = []
    reply = await chat.respond("I'm feeling a bit low.", "c", collecting(chunks))
    assert chunks[0] == "I'm sorry to hear that, champ!", "held until the sentence was whole"
    assert reply.text == "I'm sorry to hear that, champ! Drink some water and rest."
    assert len(backend.requests) == 1


def test_every_persona_is_told_to_answer_everyday_questions(manager) -> None:
    for persona in manager.personas.values():
        assert HELPFUL in build_system_prompt(persona)
        assert len(persona.spec.prompt.examples) >= 5, f"{persona.id}: needs a plain, helpful example"


@pytest.mark.parametrize(
    ("piece", "banned"),
    [
        (b"**", True),
        (b" #", True),
        (b"\n", True),
        (b".\n\n", True),
        (b"\xf0\x9f\x98\x80", True),  # an emoji
        (b"\xf0\x9f", True),  # the start of one
        (b"\xe2\x98", True),  # the start of a snowman
        ("•".encode(), True),
        (b" Paris", False),
        ("—".encode(), False),
        ("’s".encode(), False),
        ("€".encode(), False),
        (b"", False),  # the end-of-turn token
    ],
)
def test_unspeakable_tokens(piece: bytes, banned: bool) -> None:
    assert unspeakable(piece) is banned


class WrittenRecorder(RecordingBackend):
    """Also keeps what the model wrote, delta by delta."""

    def __init__(self, backend) -> None:
        super().__init__(backend)
        self.written: list[str] = []

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        self.written.append("")
        async for delta in super().stream(request):
            self.written[-1] += delta.text
            yield delta


_UNSPEAKABLE = re.compile("[*#`_|~<>\\[\\]{}\n\U0001f000-\U0001ffff\u2600-\u27bf]")


@pytest.mark.model
async def test_the_embedded_model_writes_no_markup_emoji_or_line_break(smollm2, manager):
    """Asked for a markdown list with emoji, SmolLM2 writes one without the ban (checked below with
    the same model, prompt and greedy sampling); through the service it writes plain text, and the
    reply is its own text."""
    question = "Give me a markdown list of three fruits, each with an emoji."
    manager.set_active("assistant")
    backend = WrittenRecorder(smollm2)
    async with persona_server(manager, backend) as (server, _):
        text = handled(await say(server.port, question)).data["text"]
    written = backend.written[-1]
    assert written.strip().startswith(text), "the reply is the model's text as it wrote it"
    assert not _UNSPEAKABLE.search(written), written

    messages = [dict(m) for m in backend.requests[-1].messages]
    llama = smollm2._llama.llama
    unconstrained = await asyncio.to_thread(
        llama.create_chat_completion, messages=messages, max_tokens=60, temperature=0.0, seed=0
    )
    assert _UNSPEAKABLE.search(unconstrained["choices"][0]["message"]["content"]), unconstrained


def test_a_retried_refusal_cannot_start_the_same_way() -> None:
    """Asked again, qwen-1.5b often starts the same refusal ("I don't have a favorite color."); the
    retry's first token may not be the refusal's."""
    tokens = Unspeakable(np.array([0], dtype=np.intc), np.zeros(5, dtype=bool), np.array([], dtype=np.intc))
    processor = plain_speech_processor(tokens, [3])
    prompt = np.array([4, 4, 4], dtype=np.intc)
    first = processor(prompt, np.zeros(5, dtype=np.float32))
    assert np.isneginf(first[[0, 3]]).all() and np.isfinite(first[[1, 2, 4]]).all()
    later = processor(np.append(prompt, 2), np.zeros(5, dtype=np.float32))
    assert np.isneginf(later[0]) and np.isfinite(later[3]), "only the first token is kept from it"


async def test_the_retry_asks_the_backend_not_to_open_with_the_refusal(manager):
    backend = ScriptedBackend("I don't have a favorite color.", "Blue, like the sea.")
    chat = PersonaChat(manager, backend, ConversationStore())
    reply = await chat.respond("What's your favorite color?", "c", collecting([]))
    assert reply.text == "Blue, like the sea."
    assert backend.requests[0].avoid_openings == ()
    assert backend.requests[1].avoid_openings == ("I don't have a favorite color.",)
