"""What each Wyoming service measures about itself, and the `/metrics` endpoint that exports it.

The per-connection boundary (`wyoming_server.WyomingService`) reports into a `ServiceMetrics`: every
event by type and outcome, the time the handler spent on it, connections, every `error` event sent,
and the latency of whole requests (a request event up to the event that answers it). Each server has
its own `CollectorRegistry` (never prometheus_client's global one), served over HTTP by
`start_exporter` in the service's own event loop when `--metrics-port` is set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

_LOGGER = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The Prometheus text format 0.0.4 (what `generate_latest` writes)."""

# From a VAD chunk (milliseconds) to a whole LLM reply (tens of seconds).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

OTHER_EVENT = "other"
"""Label for event types outside the Wyoming protocol: a client cannot grow the label set."""

KNOWN_EVENTS = frozenset(
    {
        "audio-start",
        "audio-chunk",
        "audio-stop",
        "describe",
        "info",
        "ping",
        "pong",
        "error",
        "transcribe",
        "transcript",
        "transcript-start",
        "transcript-chunk",
        "transcript-stop",
        "synthesize",
        "synthesize-start",
        "synthesize-chunk",
        "synthesize-stop",
        "synthesize-stopped",
        "voice-started",
        "voice-stopped",
        "handled",
        "handled-start",
        "handled-chunk",
        "handled-stop",
        "not-handled",
        "recognize",
        "intent",
        "not-recognized",
        "detect",
        "detection",
        "not-detected",
        "run-pipeline",
        "run-satellite",
        "pause-satellite",
        "satellite-connected",
        "satellite-disconnected",
    }
)


class Outcome:
    """How the boundary finished an event (the `outcome` label)."""

    OK = "ok"
    CLIENT_ERROR = "client_error"
    INTERNAL_ERROR = "internal_error"
    ABORTED = "aborted"
    """The client went away (or the server stopped) while the event was being handled."""


@dataclass(frozen=True)
class RequestTiming:
    """A request event and the events written back that answer it (for latency histograms)."""

    request: str
    last: frozenset[str]
    """Written events that complete the request: `request_seconds` is observed."""
    first: frozenset[str] = frozenset()
    """Written events whose first occurrence is observed as `first_response_seconds`."""
    abandon: frozenset[str] = frozenset()
    """Received events that end an open request without observing it (a new round started)."""


# Service-specific latency: TTS time to first audio, ASR audio-stop -> transcript, persona time to
# first chunk. A streamed TTS request is timed from synthesize-start; its compat `synthesize` arrives
# while that request is open and so is not timed again.
TIMINGS: Mapping[str, tuple[RequestTiming, ...]] = MappingProxyType(
    {
        "tts": (
            RequestTiming("synthesize", last=frozenset({"audio-stop"}), first=frozenset({"audio-start"})),
            RequestTiming(
                "synthesize-start", last=frozenset({"synthesize-stopped"}), first=frozenset({"audio-start"})
            ),
        ),
        "asr": (
            # With endpointing the transcript may go out before audio-stop: the next round abandons it.
            RequestTiming(
                "audio-stop", last=frozenset({"transcript"}), abandon=frozenset({"audio-start", "transcribe"})
            ),
        ),
        "persona": (
            RequestTiming(
                "transcript",
                last=frozenset({"handled", "not-handled"}),
                first=frozenset({"handled-chunk"}),
            ),
        ),
    }
)


def event_label(event_type: str) -> str:
    return event_type if event_type in KNOWN_EVENTS else OTHER_EVENT


class ServiceMetrics:
    """The metrics of one Wyoming server, in a registry of its own."""

    def __init__(self, service: str = "wyoming", timings: tuple[RequestTiming, ...] | None = None) -> None:
        self.service = service
        self.timings = {t.request: t for t in (TIMINGS.get(service, ()) if timings is None else timings)}
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter(
            "wyoming_persona_events",
            "Events received, by type and how the service finished them.",
            ("service", "event", "outcome"),
            registry=self.registry,
        )
        self.event_seconds = Histogram(
            "wyoming_persona_event_handling_seconds",
            "Time the service spent handling one received event (before reading the next).",
            ("service", "event"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "wyoming_persona_request_seconds",
            "From a request event to the event that completes its answer "
            "(tts: synthesize -> audio-stop, synthesize-start -> synthesize-stopped; "
            "asr: audio-stop -> transcript; persona: transcript -> handled).",
            ("service", "event"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_response_seconds = Histogram(
            "wyoming_persona_first_response_seconds",
            "From a request event to the first piece of its answer "
            "(tts: first audio-start; persona: first handled-chunk).",
            ("service", "event"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests_failed = Counter(
            "wyoming_persona_requests_failed",
            "Requests answered with an error event instead of their answer.",
            ("service", "event"),
            registry=self.registry,
        )
        self.errors_sent = Counter(
            "wyoming_persona_errors_sent",
            "Error events sent to clients, by code (bad frames, bad requests, internal failures).",
            ("service", "code"),
            registry=self.registry,
        )
        self.connections = Counter(
            "wyoming_persona_connections", "Connections accepted.", ("service",), registry=self.registry
        )
        self.open_connections = Gauge(
            "wyoming_persona_open_connections", "Connections open now.", ("service",), registry=self.registry
        )

    def connection(self) -> ConnectionMeter:
        return ConnectionMeter(self)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class LeakGuardMetrics:
    """What the persona service's leak guard did, in the service's registry.

    `action`: a reply piece `dropped` or `cut` (`rule`: prompt, self_talk, turn_label, speaker_label),
    a reply `regenerated` because all of it was withheld, or `unanswered` when the second attempt was
    withheld too (`rule` "none" for these two).
    """

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.service = metrics.service
        self.actions = Counter(
            "wyoming_persona_leak_guard",
            "What the leak guard did: reply pieces dropped or cut (by rule), replies generated again, "
            "replies withheld twice (not answered).",
            ("service", "action", "rule"),
            registry=metrics.registry,
        )

    def count(self, action: str, rule: str = "none") -> None:
        self.actions.labels(self.service, action, rule).inc()


class ConnectionMeter:
    """One connection's view of the service metrics; it tracks the request being answered.

    A meter without metrics (a handler used outside `ServiceServer`) records nothing.
    """

    def __init__(self, metrics: ServiceMetrics | None = None) -> None:
        self.metrics = metrics
        self._open: RequestTiming | None = None
        self._started = 0.0
        self._first_seen = False

    def opened(self) -> None:
        if self.metrics is not None:
            self.metrics.connections.labels(self.metrics.service).inc()
            self.metrics.open_connections.labels(self.metrics.service).inc()

    def closed(self) -> None:
        if self.metrics is not None:
            self.metrics.open_connections.labels(self.metrics.service).dec()

    def received(self, event_type: str) -> None:
        if self.metrics is None:
            return
        if self._open is not None:
            if event_type in self._open.abandon:
                self._open = None
            else:
                return  # one timed request at a time (a stream's compat event is part of it)
        timing = self.metrics.timings.get(event_type)
        if timing is not None:
            self._open, self._started, self._first_seen = timing, time.perf_counter(), False

    def handled(self, event_type: str, outcome: str, seconds: float) -> None:
        if self.metrics is None:
            return
        service, event = self.metrics.service, event_label(event_type)
        self.metrics.events.labels(service, event, outcome).inc()
        self.metrics.event_seconds.labels(service, event).observe(seconds)

    def sent(self, event_type: str) -> None:
        timing = self._open
        if self.metrics is None or timing is None:
            return
        elapsed = time.perf_counter() - self._started
        service = self.metrics.service
        if event_type in timing.first and not self._first_seen:
            self._first_seen = True
            self.metrics.first_response_seconds.labels(service, timing.request).observe(elapsed)
        if event_type in timing.last:
            self._open = None
            self.metrics.request_seconds.labels(service, timing.request).observe(elapsed)

    def error_sent(self, code: str | None) -> None:
        if self.metrics is None:
            return
        service = self.metrics.service
        self.metrics.errors_sent.labels(service, code or "none").inc()
        if self._open is not None:
            self.metrics.requests_failed.labels(service, self._open.request).inc()
            self._open = None


@dataclass(frozen=True)
class MetricsOptions:
    """`--metrics-port` and `--metrics-host` of a Wyoming service: where its `/metrics` is served
    (port 0 = off)."""

    service: str
    port: int = 0
    host: str = "127.0.0.1"


METRICS_KEY = web.AppKey("service_metrics", ServiceMetrics)


async def _metrics_view(request: web.Request) -> web.Response:
    body = request.app[METRICS_KEY].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def exporter_app(metrics: ServiceMetrics) -> web.Application:
    app = web.Application()
    app[METRICS_KEY] = metrics
    app.router.add_get("/metrics", _metrics_view)
    return app


async def start_exporter(metrics: ServiceMetrics, host: str, port: int) -> web.AppRunner:
    """Serve GET /metrics on host:port in the running loop; `await runner.cleanup()` stops it."""
    runner = web.AppRunner(exporter_app(metrics), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    _LOGGER.info("Metrics on http://%s:%d/metrics", host, port)
    return runner
