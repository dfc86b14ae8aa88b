"""Prometheus text exposition written by hand: a few counters, gauges and histograms.

What the API can measure is what it sees: its own requests, its own health probes of each Wyoming
service (latency of `describe`, up or down), persona switches it made and the persona snapshot.
Requests HA sends to the Wyoming services themselves do not pass through this process, so they are
not counted here.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]

PROBE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    body = ",".join(f'{key}="{_escape(value)}"' for key, value in labels)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


@dataclass
class Counter:
    name: str
    help: str
    values: dict[Labels, float] = field(default_factory=lambda: defaultdict(float))

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        self.values[labels] += amount

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        lines += [f"{self.name}{_labels(k)} {_number(v)}" for k, v in sorted(self.values.items())]
        return lines


@dataclass
class Gauge:
    name: str
    help: str
    values: dict[Labels, float] = field(default_factory=dict)

    def set(self, labels: Labels, value: float) -> None:
        self.values[labels] = value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge"]
        lines += [f"{self.name}{_labels(k)} {_number(v)}" for k, v in sorted(self.values.items())]
        return lines


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...] = PROBE_BUCKETS
    counts: dict[Labels, list[int]] = field(default_factory=dict)
    sums: dict[Labels, float] = field(default_factory=lambda: defaultdict(float))

    def observe(self, labels: Labels, value: float) -> None:
        counts = self.counts.setdefault(labels, [0] * (len(self.buckets) + 1))
        for index, bound in enumerate((*self.buckets, math.inf)):
            if value <= bound:
                counts[index] += 1
        self.sums[labels] += value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for labels, counts in sorted(self.counts.items()):
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                lines.append(f"{self.name}_bucket{_labels((*labels, ('le', _number(bound))))} {count}")
            lines.append(f"{self.name}_sum{_labels(labels)} {_number(self.sums[labels])}")
            lines.append(f"{self.name}_count{_labels(labels)} {counts[-1]}")
        return lines


class ApiMetrics:
    """Every metric this process exports; one instance per app."""

    def __init__(self) -> None:
        self.requests = Counter(
            "wyoming_persona_api_requests_total", "HTTP requests answered by the control API."
        )
        self.errors = Counter(
            "wyoming_persona_api_errors_total", "HTTP requests answered with a 4xx or 5xx status."
        )
        self.request_seconds = Histogram(
            "wyoming_persona_api_request_duration_seconds", "Time to answer an HTTP request."
        )
        self.service_up = Gauge(
            "wyoming_persona_service_up", "1 if the Wyoming service answered describe at the last probe."
        )
        self.probe_seconds = Histogram(
            "wyoming_persona_service_probe_duration_seconds",
            "Time for a Wyoming service to answer describe (health probes by this API).",
        )
        self.probe_failures = Counter(
            "wyoming_persona_service_probe_failures_total", "Health probes that failed, per service."
        )
        self.switches = Counter(
            "wyoming_persona_persona_switches_total", "Active persona changes made through this process."
        )
        self.personas = Gauge("wyoming_persona_personas", "Personas in the current snapshot.")
        self.active = Gauge("wyoming_persona_active_persona", "1 for the active persona.")

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (("method", method), ("route", route))
        self.requests.inc((*labels, ("status", str(status))))
        if status >= 400:
            self.errors.inc(labels)
        self.request_seconds.observe(labels, seconds)

    def observe_probe(self, service: str, ok: bool, seconds: float) -> None:
        labels = (("service", service),)
        self.service_up.set(labels, 1.0 if ok else 0.0)
        if ok:
            self.probe_seconds.observe(labels, seconds)
        else:
            self.probe_failures.inc(labels)

    def set_personas(self, persona_ids: list[str], active_id: str) -> None:
        self.personas.set((), float(len(persona_ids)))
        self.active.values = {(("persona", pid),): float(pid == active_id) for pid in persona_ids}

    def render(self) -> str:
        lines: list[str] = []
        for metric in (
            self.requests,
            self.errors,
            self.request_seconds,
            self.service_up,
            self.probe_seconds,
            self.probe_failures,
            self.switches,
            self.personas,
            self.active,
        ):
            lines += metric.render()
        return "\n".join(lines) + "\n"
