"""`--pinned-persona PERSONA=PORT`: the agents pinned to one persona each, as the persona service serves
them (agent/pinned.py) and the control API shows them (the studio says which agent is which)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

from .personas.loader import PERSONA_ID

FLAG = "--pinned-persona"


def agent_name(persona_name: str) -> str:
    """A pinned agent's handle program name: what Home Assistant calls the agent and its config entry."""
    return f"{persona_name} (wyoming-persona)"


class PinnedError(ValueError):
    """A `--pinned-persona` value that cannot work; the message names it."""


@dataclass(frozen=True)
class PinnedAgent:
    persona_id: str
    uri: str

    @property
    def port(self) -> int | None:
        return urlparse(self.uri).port if self.uri.startswith("tcp://") else None


def add_pinned_arguments(parser: argparse.ArgumentParser, help_text: str | None = None) -> None:
    group = parser.add_argument_group("pinned agents (a persona per wake word)")
    group.add_argument(
        FLAG,
        action="append",
        default=[],
        metavar="PERSONA=PORT",
        help=help_text
        or "also serve a Wyoming agent on PORT (on --uri's host; or PERSONA=tcp://HOST:PORT) that "
        "always answers as PERSONA, whatever persona is active (repeatable)",
    )


def parse_pinned(values: Sequence[str], main_uri: str) -> tuple[PinnedAgent, ...]:
    """`ID=PORT` or `ID=tcp://HOST:PORT` (or `unix://PATH`) values into pinned agents."""
    main = urlparse(main_uri)
    pins: list[PinnedAgent] = []
    for value in values:
        persona_id, sep, where = (part.strip() for part in value.partition("="))
        if not sep or not persona_id or not where:
            raise PinnedError(f"{FLAG} {value!r}: expected PERSONA=PORT, e.g. butler=10510")
        if not PERSONA_ID.fullmatch(persona_id):
            raise PinnedError(f"{FLAG} {value!r}: {persona_id!r} is not a persona id")
        if where.isdigit():
            if main.scheme != "tcp" or not main.hostname:
                raise PinnedError(f"{FLAG} {value!r}: a bare port needs a tcp:// --uri; give a whole URI")
            port = int(where)
            if not 0 < port < 65536:
                raise PinnedError(f"{FLAG} {value!r}: port {port} is out of range")
            host = f"[{main.hostname}]" if ":" in main.hostname else main.hostname
            uri = f"tcp://{host}:{port}"
        elif where.startswith(("tcp://", "unix://")):
            uri = where
        else:
            raise PinnedError(f"{FLAG} {value!r}: expected a port or a tcp:// or unix:// URI")
        pins.append(PinnedAgent(persona_id, uri))
    uris = [main_uri, *(pin.uri for pin in pins)]
    if len(set(uris)) != len(uris):
        raise PinnedError(f"{FLAG}: every agent needs its own address, got {', '.join(uris)}")
    ids = [pin.persona_id for pin in pins]
    if len(set(ids)) != len(ids):
        raise PinnedError(f"{FLAG}: a persona is pinned twice in {', '.join(values)}")
    return tuple(pins)
