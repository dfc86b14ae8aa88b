"""Load and validate persona YAML files, reporting every error as `path:line:column: field: message`."""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .model import Persona, PersonaSpec

PERSONA_SUFFIXES = (".yaml", ".yml")
PERSONA_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
MAX_FILE_BYTES = 256 * 1024

_TAG = "tag:yaml.org,2002:"


@dataclass(frozen=True)
class PersonaError:
    """One problem in one persona file, located to the line and column (1-based)."""

    path: Path
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.field}: {self.message}"


class PersonaLoadError(Exception):
    """A personas folder that did not load; carries every error found."""

    def __init__(self, errors: list[PersonaError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


def load_folder(folder: Path) -> dict[str, Persona]:
    """Load every persona in `folder` (sorted by id), or raise PersonaLoadError with all errors."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PersonaLoadError([PersonaError(folder, 1, 1, "(folder)", "no such directory")])
    personas: dict[str, Persona] = {}
    errors: list[PersonaError] = []
    for path in persona_files(folder):
        try:
            persona = load_file(path)
        except PersonaLoadError as err:
            errors.extend(err.errors)
            continue
        if persona.id in personas:
            other = personas[persona.id].source.name
            errors.append(PersonaError(path, 1, 1, "(file)", f"duplicate persona id, see {other}"))
            continue
        personas[persona.id] = persona
    if not personas and not errors:
        errors.append(PersonaError(folder, 1, 1, "(folder)", "no *.yaml persona files found"))
    if errors:
        raise PersonaLoadError(errors)
    return dict(sorted(personas.items()))


def persona_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in PERSONA_SUFFIXES and p.is_file())


def load_file(path: Path) -> Persona:
    """Load one persona file; the id is its stem."""
    path = Path(path)
    persona_id = path.stem
    errors: list[PersonaError] = []
    if not PERSONA_ID.match(persona_id):
        errors.append(
            PersonaError(path, 1, 1, "(file)", "file name must be lowercase letters, digits, _ or -")
        )
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise PersonaLoadError([PersonaError(path, 1, 1, "(file)", err.strerror or str(err))]) from err
    if len(raw) > MAX_FILE_BYTES:
        errors.append(PersonaError(path, 1, 1, "(file)", f"larger than {MAX_FILE_BYTES} bytes"))
        raise PersonaLoadError(errors)
    spec = parse_persona(raw.decode("utf-8", errors="replace"), path, errors)
    if errors or spec is None:
        raise PersonaLoadError(errors)
    return Persona(id=persona_id, source=path, spec=spec)


def parse_persona(text: str, path: Path, errors: list[PersonaError]) -> PersonaSpec | None:
    """Parse YAML text into a PersonaSpec, appending every problem to `errors`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        errors.append(PersonaError(path, line, column, "(yaml)", _yaml_message(err)))
        return None
    except yaml.YAMLError as err:
        errors.append(PersonaError(path, 1, 1, "(yaml)", str(err)))
        return None
    if node is None:
        errors.append(PersonaError(path, 1, 1, "(document)", "empty file, expected a mapping"))
        return None
    return _Validator(path, errors).convert(node, PersonaSpec, "")


def check_json(value: Any, hint: Any, field: str, path: Path) -> tuple[Any, list[PersonaError]]:
    """Validate a JSON value as if it stood at `field` of a persona file (`hint`: its type there, e.g.
    VoiceSpec): the same types, ranges and messages as the loader, for what the studio sends."""
    errors: list[PersonaError] = []
    node = yaml.compose(json.dumps(value), Loader=yaml.SafeLoader)  # JSON is YAML
    return _Validator(path, errors).convert(node, hint, field), errors


def _yaml_message(err: yaml.MarkedYAMLError) -> str:
    parts = [p for p in (err.context, err.problem) if p]
    return ", ".join(parts) or "invalid YAML"


class _Validator:
    """Walks a YAML node tree against the persona dataclasses, collecting located errors."""

    def __init__(self, path: Path, errors: list[PersonaError]) -> None:
        self.path = path
        self.errors = errors
        self.constructor = yaml.constructor.SafeConstructor()

    def error(self, node: Node, field: str, message: str) -> None:
        mark = node.start_mark
        self.errors.append(
            PersonaError(self.path, mark.line + 1, mark.column + 1, field or "(document)", message)
        )

    def convert(self, node: Node, hint: Any, field: str, meta: dict | None = None) -> Any:
        origin = typing.get_origin(hint)
        if origin in (typing.Union, types.UnionType):
            return self._union(node, typing.get_args(hint), field, meta)
        if origin is tuple:
            return self._sequence(node, typing.get_args(hint)[0], field)
        if dataclasses.is_dataclass(hint):
            return self._mapping(node, hint, field)
        return self._scalar(node, hint, field, meta or {})

    def _union(self, node: Node, options: tuple, field: str, meta: dict | None) -> Any:
        if isinstance(node, ScalarNode) and node.tag == _TAG + "null" and type(None) in options:
            return None
        for option in options:
            if option is not type(None) and _accepts(node, option):
                return self.convert(node, option, field, meta)
        names = " or ".join(_type_name(o) for o in options)
        self.error(node, field, f"expected {names}, got {_node_kind(node)}")
        return None

    def _sequence(self, node: Node, item_hint: Any, field: str) -> tuple | None:
        if not isinstance(node, SequenceNode):
            self.error(node, field, f"expected a list, got {_node_kind(node)}")
            return None
        return tuple(
            self.convert(item, item_hint, f"{field}[{index}]") for index, item in enumerate(node.value)
        )

    def _mapping(self, node: Node, cls: type, field: str) -> Any:
        if not isinstance(node, MappingNode):
            self.error(node, field, f"expected a mapping, got {_node_kind(node)}")
            return None
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        seen: set[str] = set()
        failed = len(self.errors)
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            child = f"{field}.{key}" if field else str(key)
            if not isinstance(key, str) or key_node.tag != _TAG + "str":
                self.error(key_node, field, f"keys must be strings, got {_node_kind(key_node)}")
                continue
            if key in seen:
                self.error(key_node, child, "duplicate key")
                continue
            seen.add(key)
            if key not in fields:
                self.error(key_node, child, _unknown_key_message(key, fields))
                continue
            values[key] = self.convert(value_node, hints[key], child, dict(fields[key].metadata))
        for name, spec_field in fields.items():
            required = (
                spec_field.default is dataclasses.MISSING
                and spec_field.default_factory is dataclasses.MISSING
            )
            if required and name not in seen:
                self.error(node, f"{field}.{name}" if field else name, "required field is missing")
        if len(self.errors) > failed:
            return None
        return cls(**values)

    def _scalar(self, node: Node, hint: Any, field: str, meta: dict) -> Any:
        if not _accepts(node, hint):
            self.error(node, field, f"expected {_type_name(hint)}, got {_node_kind(node)}")
            return None
        value = self.constructor.construct_object(node)
        if hint is float:
            value = float(value)
        if hint is str:
            value = value.strip()
            if meta.get("nonempty") and not value:
                self.error(node, field, "must not be empty")
            pattern = meta.get("pattern")
            if pattern and not re.match(pattern, value):
                self.error(node, field, f"{value!r} does not match {pattern}")
        low, high = meta.get("min"), meta.get("max")
        if low is not None and high is not None and not low <= value <= high:
            self.error(node, field, f"{value} is out of range [{low}, {high}]")
        return value


def _accepts(node: Node, hint: Any) -> bool:
    if not isinstance(node, ScalarNode):
        return False
    tag = node.tag.removeprefix(_TAG)
    accepted = {str: ("str",), int: ("int",), float: ("int", "float"), bool: ("bool",)}
    return tag in accepted.get(hint, ())


def _type_name(hint: Any) -> str:
    names = {str: "text", int: "an integer", float: "a number", bool: "true or false"}
    if hint is type(None):
        return "null"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _node_kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    tag = node.tag.removeprefix(_TAG)
    kinds = {"str": "text", "int": "an integer", "float": "a number", "bool": "a boolean"}
    return f"{kinds.get(tag, tag)} {node.value!r}"


def _unknown_key_message(key: str, fields: dict) -> str:
    close = difflib.get_close_matches(key, list(fields), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key{hint} (allowed: {', '.join(fields)})"
