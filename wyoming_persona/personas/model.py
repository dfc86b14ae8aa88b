"""Typed, immutable personas: what one YAML file in the personas folder describes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_VOICE = "en_US-joe-medium"
DEFAULT_BACKEND_DOWN = "Sorry, I can't think straight right now. Please try again in a moment."


def _range(low: float, high: float) -> dict:
    return {"min": low, "max": high}


NONEMPTY = {"nonempty": True}


@dataclass(frozen=True)
class Example:
    """One few-shot exchange that shows the persona's voice."""

    user: str = field(metadata=NONEMPTY)
    assistant: str = field(metadata=NONEMPTY)


@dataclass(frozen=True)
class PromptSpec:
    """Who the persona is and how it talks; the prompt builder turns this into a system prompt."""

    identity: str = field(metadata=NONEMPTY)
    style: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    examples: tuple[Example, ...] = ()


@dataclass(frozen=True)
class VoiceSpec:
    """How the persona sounds through Piper."""

    model: str = field(default=DEFAULT_VOICE, metadata=NONEMPTY)
    """A Piper voice name (looked up in the voice folders) or a path to an .onnx file."""
    speaker: int | str | None = None
    speed: float = field(default=1.0, metadata=_range(0.5, 2.0))
    """Speaking rate: 1.0 is the voice's own, 1.25 is a quarter faster (Piper length scale 0.8)."""
    pitch: float = field(default=0.0, metadata=_range(-12.0, 12.0))
    """Pitch shift in semitones; the duration is kept."""
    volume: float = field(default=1.0, metadata=_range(0.1, 2.0))


@dataclass(frozen=True)
class LlmSpec:
    """Per-persona overrides of the LLM backend's defaults."""

    model: str | None = None
    temperature: float | None = field(default=None, metadata=_range(0.0, 2.0))
    top_p: float | None = field(default=None, metadata=_range(0.05, 1.0))
    """Nucleus sampling: only the most likely words that together reach this probability are drawn."""
    repeat_penalty: float | None = field(default=None, metadata=_range(1.0, 2.0))
    """Above 1.0 discourages repeating words (llama.cpp, Ollama; OpenAI-compatible servers that know it)."""
    max_reply_tokens: int | None = field(default=None, metadata=_range(8, 2048))
    """The spoken reply's token cap; the reply still ends on a sentence end."""


@dataclass(frozen=True)
class Fallbacks:
    """Lines the persona speaks when the LLM cannot answer."""

    backend_down: str = field(default=DEFAULT_BACKEND_DOWN, metadata=NONEMPTY)


@dataclass(frozen=True)
class HomeLines:
    """How the persona confirms home commands: one line is picked per reply.

    Placeholders: `{name}` (the device, "kitchen light"), `{value}` ("20 percent", "22 degrees") and
    `{state}` ("open", "12.5 degrees"). A kind without lines is phrased by the persona's LLM.
    """

    turned_on: tuple[str, ...] = ()
    turned_off: tuple[str, ...] = ()
    opened: tuple[str, ...] = ()
    """Covers (the garage door); falls back to `turned_on`."""
    closed: tuple[str, ...] = ()
    """Covers; falls back to `turned_off`."""
    set: tuple[str, ...] = ()
    """Brightness, position or temperature set to `{value}`."""
    state: tuple[str, ...] = ()
    """An answer to "is the garage door open": `{name}` is `{state}`."""
    unknown: tuple[str, ...] = ()
    """The home has no device called `{name}`."""
    unreachable: tuple[str, ...] = ()
    """A question about `{name}` while Home Assistant cannot be reached (no old state is spoken);
    without a line the plain one is said, never an LLM's phrasing that might invent a state."""
    confirm: tuple[str, ...] = ()
    """A question back before a guess at a door, lock, alarm or the heating: `{action}` is the order
    ("close the garage door"). Without a line: "Shall I {action}?" (never an LLM's phrasing)."""
    declined: tuple[str, ...] = ()
    """The user said no to that question: nothing was done to the `{name}`."""


@dataclass(frozen=True)
class PersonaSpec:
    """The YAML document of one persona, exactly as validated."""

    name: str = field(metadata=NONEMPTY)
    prompt: PromptSpec
    description: str = ""
    language: str = field(default="en", metadata={"pattern": r"^[a-z]{2,3}([_-][A-Za-z]{2,4})?$"})
    greeting: str | None = None
    aliases: tuple[str, ...] = ()
    """Other names the persona answers to in voice commands ("the butler")."""
    voice: VoiceSpec = VoiceSpec()
    llm: LlmSpec = LlmSpec()
    fallbacks: Fallbacks = Fallbacks()
    home: HomeLines = HomeLines()


@dataclass(frozen=True)
class Persona:
    """A loaded persona: its id (the file stem), its source file and its validated spec."""

    id: str
    source: Path
    spec: PersonaSpec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def voice(self) -> VoiceSpec:
        return self.spec.voice

    @property
    def llm(self) -> LlmSpec:
        return self.spec.llm

    @property
    def language(self) -> str:
        return self.spec.language

    @property
    def greeting(self) -> str:
        return self.spec.greeting or f"Hello, {self.spec.name} here."
