"""The API's /metrics: its own registry plus each service's scraped metrics, merged family by family."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
from aiohttp import web
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from wyoming_persona.api import ApiSettings, ServiceTarget, make_app
from wyoming_persona.api.metrics import ApiMetrics, merge_families
from wyoming_persona.api.settings import ScrapeTarget
from wyoming_persona.personas import PersonaManager
from wyoming_persona.service_metrics import ServiceMetrics, start_exporter
from wyoming_persona.wyoming_server import ServiceServer

from .conftest import _asr_info, _DescribeOnly, free_port

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@asynccontextmanager
async def metered_service(service: str) -> AsyncIterator[tuple[str, str]]:
    """A real Wyoming server reporting as `service`, with its metrics exporter; yields (uri, metrics url)."""
    server = ServiceServer(
        "tcp://127.0.0.1:0", functools.partial(_DescribeOnly, info=_asr_info), ServiceMetrics(service)
    )
    await server.start()
    runner = await start_exporter(server.metrics, "127.0.0.1", 0)
    try:
        port = runner.addresses[0][1]
        yield f"tcp://127.0.0.1:{server.port}", f"http://127.0.0.1:{port}/metrics"
    finally:
        await runner.cleanup()
        await server.close()


MeteredFactory = Callable[[str], AbstractAsyncContextManager[tuple[str, str]]]


def parse(text: str) -> Samples:
    """Every sample; parsing the whole text also proves it is a valid exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def type_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("# TYPE ")]


async def test_one_service_up_and_one_down(aiohttp_client, manager: PersonaManager) -> None:
    async with metered_service("asr") as (uri, url):
        settings = ApiSettings(
            services=(ServiceTarget("asr", uri),),
            scrape=(ScrapeTarget("asr", url), ScrapeTarget("tts", f"http://127.0.0.1:{free_port()}/metrics")),
        )
        client = await aiohttp_client(make_app(manager, settings))
        assert (await client.get("/api/health")).status == 200  # one describe reaches the asr service
        response = await client.get("/metrics")
        assert response.status == 200
        text = await response.text()
    samples = parse(text)
    assert samples[("wyoming_persona_scrape_up", (("service", "asr"),))] == 1
    assert samples[("wyoming_persona_scrape_up", (("service", "tts"),))] == 0
    describe = (("event", "describe"), ("outcome", "ok"), ("service", "asr"))
    assert samples[("wyoming_persona_events_total", describe)] >= 1
    assert samples[("wyoming_persona_service_up", (("service", "asr"),))] == 1
    assert not any(
        labels and dict(labels).get("service") == "tts" and name.startswith("wyoming_persona_events")
        for name, labels in samples
    )
    lines = type_lines(text)
    assert len(lines) == len(set(lines)), "a metric family is repeated"


async def test_two_services_share_each_family(aiohttp_client, manager: PersonaManager) -> None:
    async with metered_service("asr") as (asr_uri, asr_url), metered_service("vad") as (vad_uri, vad_url):
        settings = ApiSettings(
            services=(ServiceTarget("asr", asr_uri), ServiceTarget("vad", vad_uri)),
            scrape=(ScrapeTarget("asr", asr_url), ScrapeTarget("vad", vad_url)),
        )
        client = await aiohttp_client(make_app(manager, settings))
        await client.get("/api/health")
        text = await (await client.get("/metrics")).text()
    lines = type_lines(text)
    assert len(lines) == len(set(lines)), "a metric family is repeated"
    assert "# TYPE wyoming_persona_events_total counter" in lines
    samples = parse(text)
    for service in ("asr", "vad"):
        assert samples[("wyoming_persona_connections_total", (("service", service),))] >= 1


async def test_the_targets_name_is_the_service_label(aiohttp_client, manager: PersonaManager) -> None:
    async with metered_service("something-else") as (uri, url):
        settings = ApiSettings(services=(ServiceTarget("asr", uri),), scrape=(ScrapeTarget("asr", url),))
        client = await aiohttp_client(make_app(manager, settings))
        await client.get("/api/health")
        text = await (await client.get("/metrics")).text()
    services = {dict(labels).get("service") for _, labels in parse(text)}
    assert "asr" in services and "something-else" not in services


@pytest.fixture
async def broken_exporter() -> AsyncIterator[str]:
    """An HTTP server whose /metrics is not a Prometheus exposition."""
    app = web.Application()

    async def garbage(request: web.Request) -> web.Response:
        return web.Response(text='metric{label="unclosed 1\n')

    app.router.add_get("/metrics", garbage)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/metrics"
    finally:
        await runner.cleanup()


async def test_garbage_and_silent_services_are_down_not_a_500(
    aiohttp_client, manager: PersonaManager, broken_exporter: str, silent_service: str
) -> None:
    silent_url = "http://" + silent_service.removeprefix("tcp://") + "/metrics"
    settings = ApiSettings(
        scrape=(
            ScrapeTarget("garbage", broken_exporter),
            ScrapeTarget("silent", silent_url),
            ScrapeTarget("missing", broken_exporter.replace("/metrics", "/nothing")),
        ),
        health_timeout=0.5,
    )
    client = await aiohttp_client(make_app(manager, settings))
    async with asyncio.timeout(30):
        response = await client.get("/metrics")
    assert response.status == 200
    samples = parse(await response.text())
    for name in ("garbage", "silent", "missing"):
        assert samples[("wyoming_persona_scrape_up", (("service", name),))] == 0, name


def test_merge_drops_conflicting_families(caplog: pytest.LogCaptureFixture) -> None:
    own = ApiMetrics()
    clash = Metric("wyoming_persona_personas", "pretends to be the API's", "gauge")
    clash.add_sample("wyoming_persona_personas", {}, 9.0)
    counter = Metric("thing", "a counter", "counter")
    counter.add_sample("thing_total", {}, 1.0)
    gauge = Metric("thing", "a gauge", "gauge")
    gauge.add_sample("thing", {}, 2.0)
    merged = {
        f.name: f for f in merge_families(own.registry.collect(), [("a", [clash, counter]), ("b", [gauge])])
    }
    assert merged["thing"].type == "counter"
    assert [(s.name, s.labels, s.value) for s in merged["thing"].samples] == [
        ("thing_total", {"service": "a"}, 1.0)
    ]
    assert all(s.value != 9.0 for s in merged["wyoming_persona_personas"].samples)
    assert "dropped" in caplog.text
