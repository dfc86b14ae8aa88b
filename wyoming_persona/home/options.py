"""The persona service's home control options: `--ha-url`, `--ha-token`, `--device-persona`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from .link import SUPERVISOR_URL, HomeLinkSettings


@dataclass(frozen=True)
class HomeOptions:
    link: HomeLinkSettings | None = None
    """None: no token, so no home control (home commands go to the LLM like any question)."""
    device_personas: dict[str, str] = field(default_factory=dict)
    ask_llm: bool = True
    """Show the LLM the home commands the templates and the grammar miss (a few seconds each)."""


def add_home_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("home control")
    group.add_argument(
        "--ha-url",
        default=None,
        help="Home Assistant's URL, e.g. http://homeassistant.local:8123 (in the add-on: the Supervisor)",
    )
    group.add_argument(
        "--ha-token",
        default=None,
        help="a long-lived access token (HA: your profile > Security); default: $HA_TOKEN, or the "
        "Supervisor's token in the add-on. Without one, home control is off",
    )
    group.add_argument(
        "--no-home-control",
        action="store_true",
        help="never act on the home, even with a token (home commands go to the LLM)",
    )
    group.add_argument(
        "--no-home-llm",
        action="store_true",
        help="never ask the LLM whether an utterance the sentence templates miss is a home command",
    )
    group.add_argument(
        "--device-persona",
        action="append",
        default=[],
        metavar="DEVICE=PERSONA",
        type=_device_persona,
        help="the persona that answers on one satellite or device (HA sends its id); repeatable",
    )


def home_options(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> HomeOptions:
    """The link from the flags, else from the environment (HA_TOKEN; the add-on's SUPERVISOR_TOKEN)."""
    if args.no_home_control:
        return HomeOptions(None, dict(args.device_persona), not args.no_home_llm)
    token, url = args.ha_token or environ.get("HA_TOKEN"), args.ha_url
    if not token and environ.get("SUPERVISOR_TOKEN"):
        token, url = environ["SUPERVISOR_TOKEN"], url or SUPERVISOR_URL
    link = HomeLinkSettings(url or "http://homeassistant.local:8123", token) if token else None
    return HomeOptions(link, dict(args.device_persona), not args.no_home_llm)


def _device_persona(value: str) -> tuple[str, str]:
    device, sep, persona = value.partition("=")
    if not sep or not device.strip() or not persona.strip():
        raise argparse.ArgumentTypeError(f"expected DEVICE=PERSONA, got {value!r}")
    return device.strip(), persona.strip()
