"""Pinned agents: more Wyoming handle endpoints of the persona service, each one persona for good.

`persona --pinned-persona butler=10510` serves a second conversation agent on port 10510 that always
answers as the butler: switching the active persona does not move it, and "switch to the pirate"
through it is answered ("This agent always answers as Jeeves.") and not made. Its Info names the
persona, so Home Assistant lists it as an agent of its own: one pipeline per wake word, each with its
own agent and voice. Every endpoint shares the service's one model, home control and conversation
store, whose histories are kept per persona.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from urllib.parse import urlparse

from wyoming.info import HandleModel, HandleProgram, Info

from .. import __version__
from ..personas import PersonaManager
from ..pins import FLAG, PinnedAgent, PinnedError, add_pinned_arguments, agent_name, parse_pinned
from ..service_metrics import ServiceMetrics
from ..wyoming_server import ServiceServer, register_zeroconf
from .chat import PersonaChat
from .handler import ATTRIBUTION, PersonaEventHandler
from .speculation import Speculator

_LOGGER = logging.getLogger(__name__)

__all__ = [
    "PinnedAgent",
    "PinnedError",
    "add_pinned_arguments",
    "build_pinned_info",
    "check_pinned",
    "parse_pinned",
    "serving_pinned",
]


def check_pinned(pins: Sequence[PinnedAgent], manager: PersonaManager) -> None:
    """Every pinned persona must exist when the service starts (later, a deleted one is an error reply)."""
    for pin in pins:
        if pin.persona_id not in manager.personas:
            raise PinnedError(
                f"{FLAG} {pin.persona_id}: no such persona in {manager.personas_dir}; "
                f"personas: {', '.join(manager.personas)}"
            )


def build_pinned_info(
    manager: PersonaManager, backend_name: str, home_control: bool, persona_id: str
) -> Info:
    """One handle program named after the persona, with the persona as its one model."""
    persona = manager.personas.get(persona_id)
    name = persona.name if persona is not None else persona_id
    languages = [persona.language] if persona is not None else []
    model = HandleModel(
        name=persona_id,
        attribution=ATTRIBUTION,
        installed=persona is not None,
        description=f"{name}: {persona.spec.description}".rstrip(": ") if persona else name,
        version=__version__,
        languages=languages,
    )
    program = HandleProgram(
        name=agent_name(name),
        attribution=ATTRIBUTION,
        installed=True,
        description=f"Always answers as {name} ({persona_id}), whatever persona is active ({backend_name})",
        version=__version__,
        models=[model],
        supports_handled_streaming=True,
        supports_home_control=home_control,
    )
    return Info(handle=[program])


@contextlib.asynccontextmanager
async def serving_pinned(
    pins: Sequence[PinnedAgent],
    chat: PersonaChat,
    info: Callable[[str], Info],
    metrics: ServiceMetrics,
    zeroconf: str | None = None,
    speculator: Speculator | None = None,
) -> AsyncIterator[list[ServiceServer]]:
    """Listen on every pinned address while inside (OSError if one cannot be bound: nothing is left open)."""
    servers: list[ServiceServer] = []
    tasks: list[asyncio.Task] = []
    try:
        for pin in pins:
            factory = functools.partial(
                PersonaEventHandler,
                info=functools.partial(info, pin.persona_id),
                chat=chat,
                pinned=pin.persona_id,
                speculator=speculator,
            )
            server = ServiceServer(pin.uri, factory, metrics)
            await server.start()
            servers.append(server)
            tasks.append(asyncio.create_task(server.serve_forever(), name=f"pinned-{pin.persona_id}"))
            if zeroconf:
                await register_zeroconf(server, f"{zeroconf}-{pin.persona_id}")
            _LOGGER.info("Pinned agent %r on %s", pin.persona_id, _bound(pin, server))
        yield servers
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in servers:
            await server.close()


def _bound(pin: PinnedAgent, server: ServiceServer) -> str:
    if server.port is None:
        return pin.uri
    return f"tcp://{urlparse(pin.uri).hostname}:{server.port}"
