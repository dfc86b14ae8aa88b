"""Tell a refusal of a harmless question from an answer, and name it to the model for one more try.

Qwen2.5-Coder, the model `make run` uses, was tuned to decline what is not code: asked how long to boil
an egg, the butler said "I'm sorry, but I can't assist with that."; asked about sailing ships through
HA, "I'm sorry, but I don't have the ability to provide information about sailing ships." The persona
prompt asks for everyday answers; what still slips through is caught here, sentence by sentence, before
it is spoken, and the reply is generated once more with the refusal quoted back to the model.

Only the model's own stock phrases count: a sentence saying what the persona was not told ("You haven't
told me your name") or cannot see ("I can't see the sky from here, but take one") is an answer.
"""

from __future__ import annotations

import re

from .backends import ChatMessage

_APOSTROPHE = "['’]"
_CANNOT = (
    rf"(?:can ?not|can{_APOSTROPHE}t|am unable to|{_APOSTROPHE}m unable to|am not able to"
    rf"|{_APOSTROPHE}m not able to|won{_APOSTROPHE}t be able to)"
)
_REFUSAL = re.compile(
    "|".join(
        (
            rf"\b(?:i{_APOSTROPHE}m|i am) (?:very |so |really )?sorry,? but (?:i|as an)\b",
            rf"\bi {_CANNOT} (?:assist|help|provide|answer|comply|fulfill|respond"
            r"|give (?:you )?(?:advice|information))(?: you)?(?: with)? "
            r"(?:that|this|those|your (?:request|question)|such|information|requests)\b",
            rf"\bi (?:don{_APOSTROPHE}t|do not) have the (?:ability|capability|capacity|means) to\b",
            rf"\bi (?:don{_APOSTROPHE}t|do not) have (?:personal |any |a )?"
            r"(?:preferences|opinions|feelings|tastes|favou?rite)\b",
            r"\b(?:beyond|outside) (?:my|the scope of my) (?:capabilities|abilities|expertise)\b",
            rf"\b(?:i{_APOSTROPHE}m|i am) (?:only )?(?:able|here|designed|programmed) to (?:help|assist) "
            r"(?:with|you with) (?:code|coding|programming|computer|technical)\b",
            rf"\bi {_CANNOT} (?:assist|help) (?:with|you with) (?:non|anything)\b",
            r"\bi can only (?:help|assist|answer)\b",
        )
    ),
    re.IGNORECASE,
)
_OPENER = re.compile(
    rf"^\W*(?:(?:i{_APOSTROPHE}m|i am) (?:very |so |really )?sorry|sorry|i apologi[sz]e|unfortunately"
    rf"|i {_CANNOT}|i (?:don{_APOSTROPHE}t|do not) have|as an)\b",
    re.IGNORECASE,
)
"""How a refusal starts: a sentence starting so waits until it is whole before it is spoken."""

RETRY_NOTE = (
    'I asked "{question}" and you answered "{refusal}" Do not refuse: it is an ordinary everyday '
    "question. Answer that question now, in your own voice, in one or two short sentences; if it asks "
    "about your taste, pick one."
)
"""The question is said again: without it, asked what to cook for dinner, the assistant's second try
answered its first example ("The capital of Spain is Madrid.")."""


def is_refusal(sentence: str) -> bool:
    """The sentence refuses (or says it is unable to answer) rather than answering."""
    return _REFUSAL.search(sentence) is not None


def may_start_refusal(text: str) -> bool:
    """The start of a sentence could be a refusal: wait for the whole sentence before speaking it."""
    return _OPENER.match(text) is not None


def retry_messages(messages: tuple[ChatMessage, ...], refusal: str) -> tuple[ChatMessage, ...]:
    """The same conversation, with the refusal given back to the model and named as one. Added at the
    end, so the processed prompt (system prompt, examples, history) is reused as it is."""
    refusal = refusal.strip()
    question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "").strip()
    return (
        *messages,
        {"role": "assistant", "content": refusal},
        {"role": "user", "content": RETRY_NOTE.format(question=question, refusal=refusal)},
    )
