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

SPOKEN = (
    "Your words are spoken aloud, so reply in {language} with one or two short sentences "
    "of plain speech: no lists, symbols, emoji or markdown."
)


def language_name(code: str) -> str:
    base = code.replace("-", "_").split("_")[0].lower()
    return LANGUAGE_NAMES.get(base, code)


def build_system_prompt(persona: Persona) -> str:
    """Identity first, then how the persona talks, its rules and the one line about speaking."""
    prompt = persona.spec.prompt
    lines = [prompt.identity, *prompt.style, *prompt.rules]
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
