"""The API's own Prometheus metrics (prometheus_client, one registry per app) and the merged exposition.

What the API measures itself: its own HTTP requests, its health probes of each Wyoming service
(`describe` latency, up or down), persona switches it made, the persona snapshot, and whether each
service's own `/metrics` answered (`wyoming_persona_scrape_up`). Request counts and latencies of the
Wyoming services are measured by the services themselves (`service_metrics`) and merged in by
`render_merged` on each scrape of the API.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

_LOGGER = logging.getLogger(__name__)

Labels = tuple[tuple[str, str], ...]

PROBE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _LabelledCounter:
    """`inc(labels)` with labels as pairs, the call the MQTT bridge makes (`switches.inc(...)`)."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        self._counter.labels(**dict(labels)).inc(amount)


class ApiMetrics:
    """Every metric this process exports about itself; one instance (and registry) per app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            "wyoming_persona_api_requests",
            "HTTP requests answered by the control API.",
            ("method", "route", "status"),
            registry=reg,
        )
        self.errors = Counter(
            "wyoming_persona_api_errors",
            "HTTP requests answered with a 4xx or 5xx status.",
            ("method", "route"),
            registry=reg,
        )
        self.request_seconds = Histogram(
            "wyoming_persona_api_request_duration_seconds",
            "Time to answer an HTTP request.",
            ("method", "route"),
            buckets=PROBE_BUCKETS,
            registry=reg,
        )
        self.service_up = Gauge(
            "wyoming_persona_service_up",
            "1 if the Wyoming service answered describe at the last probe.",
            ("service",),
            registry=reg,
        )
        self.probe_seconds = Histogram(
            "wyoming_persona_service_probe_duration_seconds",
            "Time for a Wyoming service to answer describe (health probes by this API).",
            ("service",),
            buckets=PROBE_BUCKETS,
            registry=reg,
        )
        self.probe_failures = Counter(
            "wyoming_persona_service_probe_failures",
            "Health probes that failed, per service.",
            ("service",),
            registry=reg,
        )
        self.scrape_up = Gauge(
            "wyoming_persona_scrape_up",
            "1 if the service's own /metrics answered at the last scrape (its metrics are merged in).",
            ("service",),
            registry=reg,
        )
        self.scrape_seconds = Gauge(
            "wyoming_persona_scrape_duration_seconds",
            "Time the last scrape of the service's /metrics took.",
            ("service",),
            registry=reg,
        )
        self._switches = Counter(
            "wyoming_persona_persona_switches",
            "Active persona changes made through this process.",
            ("source",),
            registry=reg,
        )
        self.switches = _LabelledCounter(self._switches)
        self.personas = Gauge("wyoming_persona_personas", "Personas in the current snapshot.", registry=reg)
        self.active = Gauge(
            "wyoming_persona_active_persona", "1 for the active persona.", ("persona",), registry=reg
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        if status >= 400:
            self.errors.labels(method, route).inc()
        self.request_seconds.labels(method, route).observe(seconds)

    def observe_probe(self, service: str, ok: bool, seconds: float) -> None:
        self.service_up.labels(service).set(1.0 if ok else 0.0)
        if ok:
            self.probe_seconds.labels(service).observe(seconds)
        else:
            self.probe_failures.labels(service).inc()

    def observe_scrape(self, service: str, ok: bool, seconds: float) -> None:
        self.scrape_up.labels(service).set(1.0 if ok else 0.0)
        self.scrape_seconds.labels(service).set(seconds)

    def count_switch(self, source: str) -> None:
        self._switches.labels(source).inc()

    def set_personas(self, persona_ids: list[str], active_id: str) -> None:
        self.personas.set(len(persona_ids))
        self.active.clear()  # a persona removed from the folder leaves the snapshot
        for persona_id in persona_ids:
            self.active.labels(persona_id).set(1.0 if persona_id == active_id else 0.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Families:
    """A collector of fixed metric families (what `generate_latest` needs)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def merge_families(own: Iterable[Metric], scraped: Iterable[tuple[str, Iterable[Metric]]]) -> list[Metric]:
    """The API's families, then each service's, one family per name (the `service` label tells them apart).

    Every scraped sample gets `service="<scrape target name>"` (the API's name for it wins, as with
    Prometheus's own target labels). A scraped family whose name the API uses itself, or that has a
    different type than the same name from another service, is dropped with a warning.
    """
    merged: dict[str, Metric] = {}
    for family in own:
        merged[family.name] = family
    own_names = set(merged)
    for service, families in scraped:
        for family in families:
            if family.name in own_names:
                _LOGGER.warning("Metrics of %s: %s is the API's own metric; dropped", service, family.name)
                continue
            target = merged.get(family.name)
            if target is None:
                target = Metric(family.name, family.documentation, family.type, family.unit)
                merged[family.name] = target
            elif target.type != family.type:
                _LOGGER.warning(
                    "Metrics of %s: %s is a %s here but a %s elsewhere; dropped",
                    service,
                    family.name,
                    family.type,
                    target.type,
                )
                continue
            for sample in family.samples:
                labels = {**sample.labels, "service": service}
                target.add_sample(sample.name, labels, sample.value, sample.timestamp, sample.exemplar)
    return list(merged.values())


def render_merged(metrics: ApiMetrics, scraped: Iterable[tuple[str, Iterable[Metric]]]) -> bytes:
    """Text exposition of the API's registry plus every scraped service, without duplicate families."""
    return generate_latest(_Families(merge_families(metrics.registry.collect(), scraped)))
