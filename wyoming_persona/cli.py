"""The `wyoming-persona` console script: one entry point, one subcommand per service."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import dataclass

from . import __version__

_LOGGER = logging.getLogger(__name__)
DEFAULT_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class Subcommand:
    """A subcommand lives in its own module with `add_arguments(parser)` and `run(args) -> int`."""

    name: str
    module: str
    help: str


SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("vad", "wyoming_persona.vad.cli", "Silero voice activity detection server"),
    Subcommand("asr", "wyoming_persona.asr.cli", "faster-whisper speech-to-text server"),
    Subcommand("tts", "wyoming_persona.tts.cli", "Piper text-to-speech server with persona voices"),
    Subcommand("persona", "wyoming_persona.persona.cli", "persona LLM (Wyoming handle) server"),
    Subcommand("api", "wyoming_persona.api.cli", "HTTP control API and MQTT persona entity"),
    Subcommand("talk", "wyoming_persona.talk.cli", "one voice turn through running services"),
    Subcommand("personas", "wyoming_persona.personas.cli", "list, show, check and switch personas"),
)


def load_subcommand(sub: Subcommand):
    """Import a subcommand's module, or return None if that service is not built yet."""
    try:
        return importlib.import_module(sub.module)
    except ModuleNotFoundError as err:
        if err.name and sub.module.startswith(err.name):
            return None
        raise


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """Only the chosen subcommand's module is imported, so one service never loads another's code."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="log at DEBUG level")
    common.add_argument("--log-format", default=DEFAULT_LOG_FORMAT, help="logging format")

    parser = argparse.ArgumentParser(prog="wyoming-persona", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for sub in SUBCOMMANDS:
        sub_parser = subparsers.add_parser(sub.name, parents=[common], help=sub.help)
        if sub.name != chosen:
            continue
        module = load_subcommand(sub)
        if module is None:
            parser.error(f"'{sub.name}' is not built yet in this version")
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names = {sub.name for sub in SUBCOMMANDS}
    chosen = next((arg for arg in argv if arg in names), None)
    args = build_parser(chosen).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format=args.log_format,
        stream=sys.stderr,
    )
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130
