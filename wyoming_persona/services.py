"""The one table of what `wyoming-persona` runs: each service's name, default port, CLI module and add-on.

The CLI, `make run`, the API's health defaults and the add-on tests all read this table, so adding a
service means one row here plus the service's own folder (with a `cli.py` that has
`add_arguments(parser)` and `run(args) -> int`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """A subcommand of the console script that is not a server (a tool run once)."""

    name: str
    module: str
    help: str


@dataclass(frozen=True)
class Service(Command):
    """A long-running server: what `make run` starts, the API probes and an add-on ships."""

    port: int = 0
    addon: str | None = None
    """Slug of the add-on that runs this service (several services may share one add-on)."""
    wyoming: bool = True
    """False for a plain HTTP service (answers a TCP connect, not `describe`)."""
    uses_personas: bool = False
    """Needs `--personas-dir/--state-dir` (reads the persona folder and the active persona)."""
    suite_args: tuple[str, ...] = ()
    """Extra flags `make run` passes (on top of `--uri` or `--host/--port`)."""
    metrics_port: int = 0
    """Port of the service's Prometheus `/metrics` (`--metrics-port`, by convention port + 1000); 0 = none.
    Kept off the add-ons' published ports: the API scrapes it over the add-on network."""
    side_ports: tuple[tuple[str, int], ...] = ()
    """More ports the service listens on, as (flag, port), published by its add-on; `make run` passes
    each flag with its port, or with 0 (off) when the service itself is moved to another port."""
    side_hosts: tuple[str, ...] = ()
    """Flags that set the address of the side ports; `make run` passes each with its own host."""
    links: tuple[tuple[str, str], ...] = ()
    """(flag, service): another service this one talks to; `make run` passes the flag with that
    service's address when it starts that service too."""


# Wyoming custom: piper 10200, whisper 10300; ours follow the same pattern. Listed in start order.
SERVICES: tuple[Service, ...] = (
    Service(
        "vad",
        "wyoming_persona.vad.cli",
        "Silero voice activity detection server",
        10350,
        "vad",
        metrics_port=11350,
    ),
    Service(
        "asr",
        "wyoming_persona.asr.cli",
        "faster-whisper speech-to-text server",
        10300,
        "asr",
        # Our own clients (talk, satellites without a VAD) let the ASR end the utterance itself after
        # 500 ms of silence (longer than a spoken comma), or sooner when Smart Turn judges the turn
        # complete. Then the Whisper decode is on the critical path: beam 1 decodes in about 240 ms
        # instead of 360-410 (bench/turn.py: first audio 1474 and 1701 ms in two runs, 1823 ms without
        # both). Home Assistant ends
        # the turn itself, with the decode hidden in its silence wait: the add-on keeps beam 5.
        suite_args=("--endpointing-ms", "500", "--smart-turn", "--beam-size", "1"),
        metrics_port=11300,
        # Early transcripts to the persona service: its reply starts before the turn ends.
        links=(("--speculation-uri", "persona"),),
    ),
    Service(
        "persona",
        "wyoming_persona.agent.cli",
        "persona LLM (Wyoming handle) server",
        10500,
        "persona",
        uses_personas=True,
        # Chosen by bench/persona.py: the only catalog model that stays in character (0.86), gets facts
        # right (98%) and recalls; the CLI default stays smollm2, which needs no model packages.
        suite_args=("--model", "qwen-1.5b"),
        metrics_port=11500,
        side_ports=(("--ollama-api-port", 10501),),  # the Ollama-compatible API (agent/ollama_api.py)
        side_hosts=("--ollama-api-host",),
        # A speculative reply is synthesized ahead there (Home Assistant's synthesize then hits its cache).
        links=(("--speculation-tts-uri", "tts"),),
    ),
    Service(
        "tts",
        "wyoming_persona.tts.cli",
        "Piper text-to-speech server with persona voices",
        10200,
        "tts",
        uses_personas=True,
        metrics_port=11200,
    ),
    Service(
        "api",
        "wyoming_persona.api.cli",
        "HTTP control API and MQTT persona entity",
        10580,
        "persona",
        wyoming=False,
        uses_personas=True,
    ),
)

TOOLS: tuple[Command, ...] = (
    Command("talk", "wyoming_persona.talk.cli", "one voice turn through running services"),
    Command("personas", "wyoming_persona.personas.cli", "list, show, check and switch personas"),
)

PORTS: Mapping[str, int] = {service.name: service.port for service in SERVICES}


def service(name: str, services: tuple[Service, ...] = SERVICES) -> Service:
    """The row of the named service (KeyError if there is none)."""
    for candidate in services:
        if candidate.name == name:
            return candidate
    raise KeyError(name)


def wyoming_services(services: tuple[Service, ...] = SERVICES) -> tuple[Service, ...]:
    """The services that speak Wyoming (the ones a health check asks to `describe` itself)."""
    return tuple(s for s in services if s.wyoming)
