"""Command-line options shared by several subcommands, and the frozen settings they become."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .personas.manager import DEFAULT_PERSONA, PersonaManager

DEFAULT_PERSONAS_DIR = "config/personas"
DEFAULT_STATE_DIR = "state"

# Wyoming custom: piper 10200, whisper 10300; ours follow the same pattern.
PORTS = {"tts": 10200, "asr": 10300, "vad": 10350, "persona": 10500, "api": 10580}


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
