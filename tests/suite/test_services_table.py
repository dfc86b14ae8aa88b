"""One table of services: a new service is one row there plus its own folder; `make run` supervises it."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import psutil

from wyoming_persona.api.settings import ServiceTarget, default_services
from wyoming_persona.cli import build_parser
from wyoming_persona.services import SERVICES, Service
from wyoming_persona.suite import free_ports, plan, run_suite

from . import toy_service

TOY = Service("toy", toy_service.__name__, "a toy service", 10999, addon="toy")
TABLE = (*SERVICES, TOY)
LISTEN_HOSTS = ("--host", "--metrics-host", "--ollama-api-host")


def test_a_toy_service_needs_only_its_row() -> None:
    args = build_parser("toy", TABLE).parse_args(["toy", "--uri", "tcp://127.0.0.1:1"])
    assert args.run is toy_service.run and args.uri == "tcp://127.0.0.1:1"

    planned = {p.name: p for p in plan(Path("personas"), Path("state"), services=TABLE)}
    assert planned["toy"].args == ("--uri", "tcp://127.0.0.1:10999")
    assert planned["toy"].address == "tcp://127.0.0.1:10999"
    assert "toy=tcp://127.0.0.1:10999" in planned["api"].args, "the API probes every Wyoming service"
    assert ServiceTarget("toy", "tcp://127.0.0.1:10999") in default_services(services=TABLE)


def test_make_run_binds_every_port_of_every_service_to_loopback() -> None:
    """Each listening flag `make run` passes (Wyoming, metrics, side ports) names 127.0.0.1."""
    for planned in plan(Path("personas"), Path("state")):
        args = planned.args
        hosts = {flag: args[i + 1] for i, flag in enumerate(args) if flag in LISTEN_HOSTS}
        uri = args[args.index("--uri") + 1] if "--uri" in args else "tcp://127.0.0.1:0"
        assert uri.startswith("tcp://127.0.0.1:"), planned
        assert hosts and set(hosts.values()) == {"127.0.0.1"}, planned
    persona = {p.name: p for p in plan(Path("personas"), Path("state"))}["persona"].args
    assert persona[persona.index("--ollama-api-host") + 1] == "127.0.0.1"


def test_the_default_table() -> None:
    ports = [service.port for service in SERVICES]
    assert len(set(ports)) == len(ports)
    assert {s.name: s.port for s in SERVICES}["tts"] == 10200  # the Wyoming custom (piper)
    assert {s.name: s.port for s in SERVICES}["asr"] == 10300  # the Wyoming custom (faster-whisper)


async def test_make_run_stops_with_an_error_when_a_service_dies(
    personas_dir: Path, state_dir: Path, tmp_path: Path, capsys
) -> None:
    """Before, the supervisor never noticed a service that died after start and went on waiting."""
    ports = free_ports(("vad",))
    suite = asyncio.create_task(run_suite(personas_dir, state_dir, tmp_path, ports, ("vad",)))
    me = psutil.Process()
    async with asyncio.timeout(120):
        while not (children := me.children()) or "Press Ctrl-C" not in capsys.readouterr().out:
            assert not suite.done(), suite.result()
            await asyncio.sleep(0.2)
        (child,) = children
        child.send_signal(signal.SIGKILL)
        assert await suite == 1
    err = capsys.readouterr().err
    assert "vad stopped unexpectedly with exit code -9" in err
