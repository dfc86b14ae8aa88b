"""Command-line options shared by several subcommands, and the frozen settings they become."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .personas.manager import DEFAULT_PERSONA, PersonaManager
from .services import PORTS

if TYPE_CHECKING:
    from .service_metrics import MetricsOptions

DEFAULT_PERSONAS_DIR = "config/personas"
DEFAULT_STATE_DIR = "state"
DEFAULT_METRICS_HOST = "127.0.0.1"


def add_persona_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("personas")
    group.add_argument(
        "--personas-dir",
        type=Path,
        default=Path(os.environ.get("WYOMING_PERSONA_PERSONAS_DIR", DEFAULT_PERSONAS_DIR)),
        help="folder of persona YAML files (env WYOMING_PERSONA_PERSONAS_DIR)",
    )
    group.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("WYOMING_PERSONA_STATE_DIR", DEFAULT_STATE_DIR)),
        help="folder holding the shared active persona (env WYOMING_PERSONA_STATE_DIR)",
    )
    group.add_argument(
        "--default-persona",
        default=os.environ.get("WYOMING_PERSONA_DEFAULT", DEFAULT_PERSONA),
        help="persona used when no valid active persona is stored",
    )


def persona_manager(args: argparse.Namespace) -> PersonaManager:
    return PersonaManager(args.personas_dir, args.state_dir, args.default_persona)


def add_server_arguments(parser: argparse.ArgumentParser, service: str) -> None:
    group = parser.add_argument_group("server")
    group.add_argument(
        "--uri",
        default=f"tcp://127.0.0.1:{PORTS[service]}",
        help="tcp://HOST:PORT, unix://PATH or stdio:// (default: %(default)s)",
    )
    group.add_argument(
        "--zeroconf",
        nargs="?",
        const=f"wyoming-persona-{service}",
        default=None,
        metavar="NAME",
        help="announce the service over zeroconf for Home Assistant discovery (tcp only)",
    )
    group.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics; 0 = off (default)",
    )
    group.add_argument(
        "--metrics-host",
        default=DEFAULT_METRICS_HOST,
        metavar="HOST",
        help="address the metrics listen on, whatever --uri says (default: %(default)s; 0.0.0.0 lets "
        "another machine or add-on scrape them)",
    )
    parser.set_defaults(metrics_service=service)


def metrics_options(args: argparse.Namespace) -> MetricsOptions:
    """Where a Wyoming service serves its metrics (`add_server_arguments` flags).

    The host does not follow --uri: a service opened to the network for Home Assistant keeps its
    metrics on this machine unless --metrics-host says otherwise.
    """
    from .service_metrics import MetricsOptions  # imports aiohttp and prometheus_client: only to serve

    return MetricsOptions(service=args.metrics_service, port=args.metrics_port, host=args.metrics_host)
