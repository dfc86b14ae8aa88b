"""Find a persona by what a user typed or HA sent: its id, its name or one of its aliases."""

from __future__ import annotations

from collections.abc import Mapping

from ..personas import Persona


def find_persona(personas: Mapping[str, Persona], text: str) -> Persona | None:
    """Exact id first, then a case-insensitive name, option label or alias."""
    text = text.strip()
    if text in personas:
        return personas[text]
    wanted = text.casefold()
    labels = option_labels(personas)
    for persona in personas.values():
        names = (persona.name, labels[persona.id], *persona.spec.aliases)
        if any(name.casefold() == wanted for name in names):
            return persona
    return None


def option_labels(personas: Mapping[str, Persona]) -> dict[str, str]:
    """id -> a unique display name (the persona name; `Name (id)` when two personas share one)."""
    counts: dict[str, int] = {}
    for persona in personas.values():
        key = persona.name.casefold()
        counts[key] = counts.get(key, 0) + 1
    return {
        persona.id: persona.name if counts[persona.name.casefold()] == 1 else f"{persona.name} ({persona.id})"
        for persona in personas.values()
    }
