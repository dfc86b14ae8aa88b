"""Edit a persona's YAML text in place: change only the values that changed, keep the rest byte for byte.

The persona studio sends a whole persona as JSON; `changed_values` keeps what differs from the loaded
persona, and `apply_changes` writes only that into the user's file. Comments, blank lines, key order,
flow or block style and keys the studio does not know stay as they were. A changed list is written
anew (comments inside that one list go). The result is checked by loading it again: should the
in-place edit ever not give exactly the intended document, the whole document is written fresh
(`EditResult.comments_kept` is then False) rather than saving something else than what was asked.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .model import PersonaSpec

INDENT = 2
_WIDE = 1 << 30
"""A line width PyYAML never folds at."""


@dataclass(frozen=True)
class EditResult:
    text: str
    comments_kept: bool = True
    """False when the document had to be written fresh (its comments are gone)."""


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    text: str


def spec_json(spec: PersonaSpec) -> dict[str, Any]:
    """A validated persona as plain JSON values (every field, defaults included)."""
    return _plain(dataclasses.asdict(spec))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def changed_values(draft: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """What `draft` changes in `current`: equal leaves are left out, nested mappings are compared key by
    key, None means "remove this key" (back to the default). Keys `current` lacks are kept, so the
    loader can name them."""
    changes: dict[str, Any] = {}
    for key, value in draft.items():
        old = current.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            nested = changed_values(value, old)
            if nested:
                changes[key] = nested
        elif key not in current or not _same(value, old):
            changes[key] = value
    return changes


def apply_changes(text: str, changes: Mapping[str, Any]) -> EditResult:
    """`text` with `changes` applied (None deletes a key; a mapping is merged into a mapping)."""
    if not changes:
        return EditResult(text)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        old = yaml.safe_load(text) if root is not None else None
    except yaml.YAMLError:
        root, old = None, None
        if text.strip():
            return EditResult(render_document(merge({}, changes)), comments_kept=False)
    expected = merge(old if isinstance(old, dict) else {}, changes)
    if root is None:  # empty, or only comments: keep them and add the document after them
        body = render_document(expected)
        joined = f"{text}{'' if not text or text.endswith(chr(10)) else chr(10)}{body}"
        return _checked(joined, expected)
    if not isinstance(root, MappingNode) or root.flow_style:
        return EditResult(render_document(expected), comments_kept=False)
    edits: list[_Edit] = []
    _edit_mapping(text, root, changes, edits)
    edited = text
    # From the end backwards; of two insertions at one place the outer one (added last) goes first,
    # so that the inner one ends up before it.
    for _, edit in sorted(enumerate(edits), key=lambda pair: (pair[1].start, pair[0]), reverse=True):
        edited = edited[: edit.start] + edit.text + edited[edit.end :]
    return _checked(edited, expected)


def merge(old: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The document `apply_changes` means to write: `old` with `changes`; a mapping left empty goes."""
    merged = dict(old)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            nested = merge(merged[key], value)
            if nested:
                merged[key] = nested
            else:
                merged.pop(key)
        elif isinstance(value, Mapping):
            nested = merge({}, value)
            if nested:
                merged[key] = nested
            else:
                merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def render_document(data: Mapping[str, Any]) -> str:
    """A fresh block-style document (a new persona, or the fallback)."""
    if not data:
        return "{}\n"
    return "\n".join(_block(data, 0)) + "\n"


def _checked(text: str, expected: dict[str, Any]) -> EditResult:
    try:
        if _same(yaml.safe_load(text) or {}, expected):
            return EditResult(text)
    except yaml.YAMLError:
        pass
    return EditResult(render_document(expected), comments_kept=False)


def _same(a: Any, b: Any) -> bool:
    """Equal as YAML data: 1 and 1.0 are the same number, True and 1 are not."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


# -- editing a block mapping --------------------------------------------------------------------
def _edit_mapping(text: str, node: MappingNode, changes: Mapping[str, Any], edits: list[_Edit]) -> None:
    entries = {}
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode):
            entries.setdefault(key_node.value, (key_node, value_node))
    column = node.value[0][0].start_mark.column if node.value else 0
    inserted: list[tuple[str, Any]] = []
    for key, value in changes.items():
        if key not in entries:
            if not _empty(value):
                inserted.append((key, merge({}, value) if isinstance(value, Mapping) else value))
            continue
        key_node, value_node = entries[key]
        old = _construct(value_node)
        if value is None or (
            isinstance(value, Mapping) and not merge(old if isinstance(old, dict) else {}, value)
        ):
            edits.append(_delete(text, key_node, value_node))
        elif isinstance(value, Mapping) and isinstance(value_node, MappingNode) and not value_node.flow_style:
            _edit_mapping(text, value_node, value, edits)
        elif isinstance(value, Mapping) and isinstance(old, dict):
            edits.append(_replace(text, key_node, value_node, merge(old, value), column))
        else:
            edits.append(_replace(text, key_node, value_node, value, column))
    if inserted:
        at = _line_end(text, _entry_end(text, *node.value[-1]))
        lines = _block(dict(inserted), column)
        prefix = "" if at == 0 or text[at - 1] == "\n" else "\n"
        edits.append(_Edit(at, at, prefix + "\n".join(lines) + "\n"))


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, Mapping) and not merge({}, value))


def _construct(node: Node) -> Any:
    return yaml.SafeLoader("").construct_document(node)


def _replace(text: str, key_node: Node, value_node: Node, value: Any, column: int) -> _Edit:
    inline = _inline(value)
    end = _entry_end(text, key_node, value_node)
    if _is_blank(value_node):
        return _Edit(
            key_node.end_mark.index,
            end,
            f": {inline}" if inline is not None else ":\n" + "\n".join(_block(value, column + INDENT)),
        )
    block_value = isinstance(value_node, SequenceNode | MappingNode) and not value_node.flow_style
    if inline is not None:
        if block_value or (isinstance(value_node, ScalarNode) and value_node.style in ("|", ">")):
            return _Edit(key_node.end_mark.index, end, f": {inline}")
        return _Edit(value_node.start_mark.index, end, inline)
    if isinstance(value_node, SequenceNode | MappingNode) and value_node.flow_style:
        return _Edit(value_node.start_mark.index, end, _flow(value))
    if block_value and type(value_node) is (SequenceNode if isinstance(value, list) else MappingNode):
        # The same kind of block: the first line keeps the indentation it has in the file.
        inner = value_node.start_mark.column
        lines = _block(value, inner)
        return _Edit(value_node.start_mark.index, end, "\n".join([lines[0][inner:], *lines[1:]]))
    lines = _block(value, column + INDENT)
    return _Edit(key_node.end_mark.index, end, ":\n" + "\n".join(lines))


def _delete(text: str, key_node: Node, value_node: Node) -> _Edit:
    start = text.rfind("\n", 0, key_node.start_mark.index) + 1
    end = _line_end(text, _entry_end(text, key_node, value_node))
    return _Edit(start, end, "")


def _content_end(text: str, node: Node) -> int:
    """Where the node's own text ends: PyYAML's end mark of a block collection lies past the comments
    and blank lines that follow it, and a block scalar's past its trailing line breaks."""
    if isinstance(node, ScalarNode):
        end = node.end_mark.index
        if node.style in ("|", ">"):
            while end > node.start_mark.index and text[end - 1] in " \t\r\n":
                end -= 1
        return end
    if node.flow_style or not node.value:
        return node.end_mark.index
    if isinstance(node, MappingNode):
        return _entry_end(text, *node.value[-1])
    return _content_end(text, node.value[-1])


def _entry_end(text: str, key_node: Node, value_node: Node) -> int:
    """The end of a `key: value` entry; an empty value (`key:`) ends at its colon, not at whatever
    PyYAML marks it with (the next token, maybe lines further down)."""
    if _is_blank(value_node):
        return _after_colon(text, key_node)
    return _content_end(text, value_node)


def _is_blank(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.value == "" and node.style is None


def _after_colon(text: str, key_node: Node) -> int:
    index = key_node.end_mark.index
    while index < len(text) and text[index] in " \t":
        index += 1
    return index + 1 if text[index : index + 1] == ":" else key_node.end_mark.index


def _line_end(text: str, index: int) -> int:
    """The index just after the line break that ends the line holding `index` (or the text's end)."""
    newline = text.find("\n", index)
    return len(text) if newline < 0 else newline + 1


# -- rendering ------------------------------------------------------------------------------------
def _inline(value: Any) -> str | None:
    """A value written on the key's own line, or None when it needs a block."""
    if isinstance(value, list | tuple | Mapping):
        return "[]" if not value and not isinstance(value, Mapping) else ("{}" if not value else None)
    style = '"' if isinstance(value, str) and (not value.isprintable() or "\n" in value) else None
    dumped = yaml.safe_dump(value, default_style=style, width=_WIDE, allow_unicode=True, sort_keys=False)
    return dumped.removesuffix("\n...\n").removesuffix("\n")


def _flow(value: Any) -> str:
    return yaml.safe_dump(
        value, default_flow_style=True, width=_WIDE, allow_unicode=True, sort_keys=False
    ).strip()


def _block(value: Any, column: int) -> list[str]:
    pad = " " * column
    lines: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = _inline(str(key))
            inline = _inline(item)
            if inline is not None:
                lines.append(f"{pad}{name}: {inline}")
            else:
                lines.append(f"{pad}{name}:")
                lines.extend(_block(item, column + INDENT))
        return lines
    for item in value:
        inline = _inline(item)
        if inline is not None:
            lines.append(f"{pad}- {inline}")
            continue
        nested = _block(item, column + INDENT)
        lines.append(f"{pad}- {nested[0][column + INDENT :]}")
        lines.extend(nested[1:])
    return lines
