"""The `wyoming-persona` console script: one entry point, one subcommand per service."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from . import __version__
from .services import SERVICES, TOOLS, Command

_LOGGER = logging.getLogger(__name__)
DEFAULT_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def build_parser(
    chosen: str | None = None, commands: Sequence[Command] = (*SERVICES, *TOOLS)
) -> argparse.ArgumentParser:
    """Only the chosen subcommand's module is imported, so one service never loads another's code."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="log at DEBUG level")
    common.add_argument("--log-format", default=DEFAULT_LOG_FORMAT, help="logging format")

    parser = argparse.ArgumentParser(prog="wyoming-persona", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for sub in commands:
        sub_parser = subparsers.add_parser(sub.name, parents=[common], help=sub.help)
        if sub.name != chosen:
            continue
        module = importlib.import_module(sub.module)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None, commands: Sequence[Command] = (*SERVICES, *TOOLS)) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names = {sub.name for sub in commands}
    chosen = next((arg for arg in argv if arg in names), None)
    args = build_parser(chosen, commands).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format=args.log_format,
        stream=sys.stderr,
    )
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130
