"""What a persona sends the model: a short system prompt, then its examples as earlier chat turns.

Small models follow a few concrete lines and copy what they are shown, so the system prompt is the
identity, the style markers and one line about speaking; the examples are real user/assistant turns
(not quoted in the prompt, where a small model reads them aloud or continues the transcript).
"""

from __future__ import annotations

from .model import Persona

LANGUAGE_NAMES = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian",
    "nl": "Dutch", "pt": "Portuguese", "pl": "Polish", "sv": "Swedish", "da": "Danish",
    "no": "Norwegian", "nb": "Norwegian", "fi": "Finnish", "cs": "Czech", "ru": "Russian",
    "uk": "Ukrainian", "tr": "Turkish", "el": "Greek", "hu": "Hungarian", "ro": "Romanian",
    "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "ar": "Arabic", "hi": "Hindi",
}  # fmt: skip

HELPFUL = (
    "You gladly answer every everyday question with the right facts, happily name favourite things, "
    "and never refuse a harmless question. Say an answer as a whole sentence that names what was asked "
    '("The capital of Spain is Madrid"), not as one word.'
)
"""Qwen2.5-Coder, `make run`'s model, was tuned to decline what is not code ("I'm sorry, but I can't
assist with that." to how long to boil an egg): every persona is told that everyday questions are its
job. A whole sentence gets more facts right than a one-word answer in a persona's voice ("Four, sir."
for an insect's legs; bench/helpful.py)."""
SPOKEN = (
    "Your words are spoken aloud, so reply in {language} with one or two short sentences "
    "of plain speech: no lists, symbols, emoji or markdown."
)


def language_name(code: str) -> str:
    base = code.replace("-", "_").split("_")[0].lower()
    return LANGUAGE_NAMES.get(base, code)


def build_system_prompt(persona: Persona) -> str:
    """Identity first, then how the persona talks, its rules and the lines every persona gets: answer
    everyday questions, and speak."""
    prompt = persona.spec.prompt
    lines = [prompt.identity, *prompt.style, *prompt.rules, HELPFUL]
    lines.append(SPOKEN.format(language=language_name(persona.language)))
    return "\n".join(_sentence(line) for line in lines)


def example_turns(persona: Persona) -> tuple[tuple[str, str], ...]:
    """The persona's examples as (user, assistant) turns to put between the system prompt and the chat."""
    return tuple((example.user, example.assistant) for example in persona.spec.prompt.examples)


def persona_messages(persona: Persona) -> list[dict[str, str]]:
    """The system message and the example turns: what precedes every conversation with `persona`."""
    messages = [{"role": "system", "content": build_system_prompt(persona)}]
    for user, assistant in example_turns(persona):
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": assistant})
    return messages


def _sentence(line: str) -> str:
    line = line.strip()
    return line if line[-1:] in ".!?" else f"{line}."
