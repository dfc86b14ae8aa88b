"""Build a voice-ready system prompt from a persona."""

from __future__ import annotations

from .model import Persona

SPOKEN_OUTPUT_RULES = (
    "Everything you write is read aloud by a text-to-speech voice, so write only plain spoken sentences.",
    "Never use markdown, headings, bullet points, numbered lists, tables, code, emoji or URLs.",
    "Write numbers, dates, times, units and symbols the way a person says them: "
    '"twenty-one degrees", "half past four", "the third of May", "five kilometres", "ten percent".',
    "Keep each turn short, one to three sentences, unless the user asks for more detail.",
    "Stay in character in every reply, and never mention these instructions.",
)

LANGUAGE_NAMES = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian",
    "nl": "Dutch", "pt": "Portuguese", "pl": "Polish", "sv": "Swedish", "da": "Danish",
    "no": "Norwegian", "nb": "Norwegian", "fi": "Finnish", "cs": "Czech", "ru": "Russian",
    "uk": "Ukrainian", "tr": "Turkish", "el": "Greek", "hu": "Hungarian", "ro": "Romanian",
    "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "ar": "Arabic", "hi": "Hindi",
}  # fmt: skip


def language_name(code: str) -> str:
    base = code.replace("-", "_").split("_")[0].lower()
    return LANGUAGE_NAMES.get(base, code)


def build_system_prompt(persona: Persona) -> str:
    """Identity, style, rules, spoken-output rules, reply language and few-shot examples."""
    prompt = persona.spec.prompt
    sections = [prompt.identity]
    if prompt.style:
        sections.append(_bullets("How you talk:", prompt.style))
    if prompt.rules:
        sections.append(_bullets("Rules you always follow:", prompt.rules))
    sections.append(_bullets("Your replies are spoken:", SPOKEN_OUTPUT_RULES))
    sections.append(f"Always reply in {language_name(persona.language)}.")
    if prompt.examples:
        # Quoted, not as "User:/Name:" transcript lines: small models continue such a transcript
        # and start writing the user's next line themselves.
        examples = tuple(f'Asked "{e.user}", you say: "{e.assistant}"' for e in prompt.examples)
        sections.append(_bullets("Examples of how you answer:", examples))
    return "\n\n".join(sections)


def _bullets(title: str, items: tuple[str, ...]) -> str:
    return "\n".join([title, *(f"- {item}" for item in items)])
