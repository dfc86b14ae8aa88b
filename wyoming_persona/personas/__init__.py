"""Personas: YAML files in, validated snapshots, voice-ready prompts and the shared active persona."""

from .loader import PersonaError, PersonaLoadError, load_file, load_folder
from .manager import PersonaManager, PersonaSnapshot, ReloadResult, UnknownPersonaError
from .model import Example, Fallbacks, LlmSpec, Persona, PersonaSpec, PromptSpec, VoiceSpec
from .prompt import build_system_prompt, example_turns, persona_messages

__all__ = [
    "Example",
    "Fallbacks",
    "LlmSpec",
    "Persona",
    "PersonaError",
    "PersonaLoadError",
    "PersonaManager",
    "PersonaSnapshot",
    "PersonaSpec",
    "PromptSpec",
    "ReloadResult",
    "UnknownPersonaError",
    "VoiceSpec",
    "build_system_prompt",
    "example_turns",
    "load_file",
    "load_folder",
    "persona_messages",
]
