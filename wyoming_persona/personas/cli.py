"""`wyoming-persona personas list | show ID | check [DIR] | active [ID]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..options import add_persona_arguments, persona_manager
from .loader import PersonaLoadError, load_folder
from .manager import UnknownPersonaError
from .prompt import build_system_prompt


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_persona_arguments(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="list personas; * marks the active one")
    show = actions.add_parser("show", help="print a persona's system prompt and voice settings")
    show.add_argument("persona_id", metavar="ID")
    check = actions.add_parser("check", help="validate a personas folder (exit 1 on errors)")
    check.add_argument("folder", nargs="?", type=Path, metavar="DIR")
    active = actions.add_parser("active", help="print the active persona, or set it")
    active.add_argument("persona_id", nargs="?", metavar="ID")


def run(args: argparse.Namespace) -> int:
    if args.action == "check":
        return _check(args.folder or args.personas_dir)
    try:
        manager = persona_manager(args)
    except PersonaLoadError as err:
        print(err, file=sys.stderr)
        return 1
    try:
        if args.action == "list":
            active = manager.active().id
            for persona in manager.personas.values():
                mark = "*" if persona.id == active else " "
                print(f"{mark} {persona.id:<16} {persona.name} - {persona.spec.description}")
        elif args.action == "show":
            persona = manager.get(args.persona_id)
            voice = persona.voice
            print(f"# {persona.name} ({persona.id}) from {persona.source}")
            print(
                f"voice: model={voice.model} speaker={voice.speaker} speed={voice.speed} "
                f"pitch={voice.pitch:+g} semitones volume={voice.volume}"
            )
            llm = persona.llm
            print(
                f"llm: model={llm.model or 'backend default'} temperature={llm.temperature} "
                f"max_reply_tokens={llm.max_reply_tokens}"
            )
            print(f"greeting: {persona.greeting}\n")
            print(build_system_prompt(persona))
        elif args.persona_id:
            print(manager.set_active(args.persona_id).id)
        else:
            print(manager.active().id)
    except UnknownPersonaError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _check(folder: Path) -> int:
    try:
        personas = load_folder(folder)
    except PersonaLoadError as err:
        for error in err.errors:
            print(error, file=sys.stderr)
        print(f"{len(err.errors)} error(s) in {folder}", file=sys.stderr)
        return 1
    print(f"{len(personas)} personas OK in {folder}: {', '.join(personas)}")
    return 0
