"""Health probes: each configured Wyoming service must answer `describe` within a timeout."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from wyoming.info import Info

from ..healthcheck import describe
from .settings import ServiceTarget

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceHealth:
    name: str
    uri: str
    ok: bool
    latency_ms: float | None = None
    error: str | None = None
    programs: tuple[str, ...] = ()
    """Names of the programs the service advertises (asr, tts, handle, ...)."""

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "uri": self.uri,
            "ok": self.ok,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 2),
            "error": self.error,
            "programs": list(self.programs),
        }


async def probe(target: ServiceTarget, limit: float) -> ServiceHealth:
    """Connect, send describe, wait for info; never raises."""
    start = time.perf_counter()
    try:
        async with asyncio.timeout(limit):
            info = await describe(target.uri)
    except TimeoutError:
        return ServiceHealth(target.name, target.uri, False, error=f"no info within {limit:g} s")
    except (OSError, ValueError) as err:
        return ServiceHealth(target.name, target.uri, False, error=str(err) or type(err).__name__)
    latency_ms = (time.perf_counter() - start) * 1000
    return ServiceHealth(target.name, target.uri, True, latency_ms=latency_ms, programs=_programs(info))


async def probe_all(targets: tuple[ServiceTarget, ...], limit: float) -> list[ServiceHealth]:
    return list(await asyncio.gather(*(probe(target, limit) for target in targets)))


def _programs(info: Info) -> tuple[str, ...]:
    names = []
    for kind in ("asr", "tts", "handle", "intent", "wake", "mic", "snd"):
        for program in getattr(info, kind, None) or ():
            names.append(f"{kind}:{program.name}")
    return tuple(names)
