"""Frozen settings of the control API and the MQTT bridge, parsed once from the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlparse

from ..access import is_loopback
from ..pins import PinnedAgent
from ..services import PORTS, SERVICES, Service, wyoming_services

DEFAULT_HEALTH_TIMEOUT = 2.0
DEFAULT_STUDIO_TIMEOUT = 60.0
SUPERVISOR_IP = "172.30.32.2"
"""Where Home Assistant's Supervisor proxies ingress requests from: its fixed address on the hassio
network (supervisor/docker/network.py, `DOCKER_IPV4_NETWORK_MASK[2]` of 172.30.32.0/23)."""


class SettingsError(ValueError):
    """A flag value that cannot work; the message says which one and why."""


@dataclass(frozen=True)
class ServiceTarget:
    """A Wyoming service the health check asks to `describe` itself."""

    name: str
    uri: str


@dataclass(frozen=True)
class ScrapeTarget:
    """A service's Prometheus endpoint that the API's `/metrics` fetches and merges into its own."""

    name: str
    url: str


@dataclass(frozen=True)
class ApiSettings:
    host: str = "127.0.0.1"
    port: int = PORTS["api"]
    token: str | None = None
    services: tuple[ServiceTarget, ...] = ()
    health_timeout: float = DEFAULT_HEALTH_TIMEOUT
    """Seconds a service has to answer `describe`, and to answer a metrics scrape."""
    scrape: tuple[ScrapeTarget, ...] = ()
    ingress_port: int = 0
    """Port of Home Assistant's ingress (the add-on's sidebar panel); 0: none."""
    ingress_host: str = "0.0.0.0"
    ingress_peer: str = SUPERVISOR_IP
    """The one peer the ingress port answers: the Supervisor's proxy, which lets through only users
    that Home Assistant signed in."""
    studio_tts: str | None = None
    """The TTS the studio's preview and chat speak with; None: the --service named tts."""
    studio_persona: str | None = None
    """The persona service the studio's chat talks to; None: the --service named persona."""
    pinned: tuple[PinnedAgent, ...] = ()
    """The persona service's pinned agents, shown in the studio."""
    studio_timeout: float = DEFAULT_STUDIO_TIMEOUT
    """Seconds the studio waits for any one answer of the TTS or the persona service."""

    def service_uri(self, name: str) -> str | None:
        """The studio's `tts` or `persona` service: its own flag, else the health check's service."""
        own = {"tts": self.studio_tts, "persona": self.studio_persona}.get(name)
        return own or next((s.uri for s in self.services if s.name == name), None)

    def check(self) -> None:
        """Refuse settings that would expose an unauthenticated API to the network."""
        if not self.token and not is_loopback(self.host):
            raise SettingsError(
                f"--host {self.host} is not a loopback address: set --token "
                "(or WYOMING_PERSONA_API_TOKEN) so that the API is not open to the network"
            )


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    node_id: str = "wyoming_persona"
    discovery_prefix: str = "homeassistant"
    poll_interval: float = 0.5
    reconnect_min: float = 1.0
    reconnect_max: float = 30.0

    @property
    def base_topic(self) -> str:
        return f"wyoming_persona/{self.node_id}"


def default_services(
    host: str = "127.0.0.1", services: tuple[Service, ...] = SERVICES
) -> tuple[ServiceTarget, ...]:
    """The Wyoming services of the services table, on their default ports."""
    return tuple(ServiceTarget(s.name, f"tcp://{host}:{s.port}") for s in wyoming_services(services))


def default_scrape_targets(
    host: str = "127.0.0.1", services: tuple[Service, ...] = SERVICES
) -> tuple[ScrapeTarget, ...]:
    """The metrics endpoints of the services table, on their default ports."""
    return tuple(
        ScrapeTarget(s.name, f"http://{host}:{s.metrics_port}/metrics")
        for s in wyoming_services(services)
        if s.metrics_port
    )


def parse_scrape(text: str) -> ScrapeTarget:
    """`NAME=http://HOST:PORT/metrics` into a ScrapeTarget."""
    name, sep, url = text.partition("=")
    name, url = name.strip(), url.strip()
    if not sep or not name or not url:
        raise SettingsError(f"--scrape {text!r}: expected NAME=http://HOST:PORT/metrics")
    parsed = urlparse(url)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme not in ("http", "https") or not parsed.hostname or port is None:
        raise SettingsError(f"--scrape {text!r}: expected an http://HOST:PORT/metrics URL")
    return ScrapeTarget(name, url)


def parse_service(text: str) -> ServiceTarget:
    """`NAME=tcp://HOST:PORT` (or `NAME=unix://PATH`) into a ServiceTarget."""
    name, sep, uri = text.partition("=")
    name, uri = name.strip(), uri.strip()
    if not sep or not name or not uri:
        raise SettingsError(f"--service {text!r}: expected NAME=tcp://HOST:PORT")
    parsed = urlparse(uri)
    if parsed.scheme == "tcp":
        try:
            port = parsed.port
        except ValueError:
            port = None
        if not parsed.hostname or port is None:
            raise SettingsError(f"--service {text!r}: a tcp URI needs a host and a port")
    elif parsed.scheme == "unix":
        if not (parsed.netloc + parsed.path):
            raise SettingsError(f"--service {text!r}: a unix URI needs a path")
    else:
        raise SettingsError(f"--service {text!r}: only tcp:// and unix:// services can be probed")
    return ServiceTarget(name, uri)


def parse_mqtt_url(url: str) -> tuple[str, int, str | None, str | None]:
    """`mqtt://[user[:password]@]host[:port]` into (host, port, username, password)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "tcp"):
        raise SettingsError(f"--mqtt {url!r}: expected mqtt://[user:password@]host[:port]")
    try:
        port = parsed.port or 1883
    except ValueError as err:
        raise SettingsError(f"--mqtt: {err}") from err
    if not parsed.hostname:
        raise SettingsError("--mqtt: the URL has no host")
    username = unquote(parsed.username) if parsed.username else None
    password = unquote(parsed.password) if parsed.password else None
    return parsed.hostname, port, username, password
