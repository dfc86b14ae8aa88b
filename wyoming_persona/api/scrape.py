"""Fetch each Wyoming service's own `/metrics` (with a timeout) and parse it into metric families."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from .settings import ScrapeTarget

_LOGGER = logging.getLogger(__name__)

MAX_SCRAPE_BYTES = 4 * 1024 * 1024
"""A service's exposition is a few kB; anything this large is refused rather than held in memory."""


@dataclass(frozen=True)
class ScrapeResult:
    name: str
    ok: bool
    seconds: float
    families: tuple[Metric, ...] = field(default=())
    error: str | None = None


async def scrape(session: aiohttp.ClientSession, target: ScrapeTarget, limit: float) -> ScrapeResult:
    """GET the target's exposition and parse it; never raises (a failure is `ok=False`)."""
    start = time.perf_counter()
    try:
        async with asyncio.timeout(limit), session.get(target.url) as response:
            if response.status != 200:
                raise ValueError(f"HTTP {response.status}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > MAX_SCRAPE_BYTES:
                    raise ValueError(f"exposition larger than {MAX_SCRAPE_BYTES} bytes")
        families = tuple(text_string_to_metric_families(body.decode("utf-8")))
    except TimeoutError:
        return _failed(target, start, f"no answer within {limit:g} s")
    except (aiohttp.ClientError, OSError, ValueError, UnicodeDecodeError) as err:
        return _failed(target, start, str(err) or type(err).__name__)
    return ScrapeResult(target.name, True, time.perf_counter() - start, families)


def _failed(target: ScrapeTarget, start: float, error: str) -> ScrapeResult:
    _LOGGER.debug("Metrics of %s at %s: %s", target.name, target.url, error)  # scrape_up 0 says it
    return ScrapeResult(target.name, False, time.perf_counter() - start, error=error)


async def scrape_all(
    session: aiohttp.ClientSession, targets: tuple[ScrapeTarget, ...], limit: float
) -> list[ScrapeResult]:
    return list(await asyncio.gather(*(scrape(session, target, limit) for target in targets)))
