"""Editing a persona file in place (what the studio's save does): exactly the intended document, and
everything the edit did not touch kept byte for byte, comments included."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wyoming_persona.personas.edit import apply_changes, changed_values, merge, render_document, spec_json
from wyoming_persona.personas.loader import load_file

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "personas"
FILES = sorted(SHIPPED.glob("*.yaml"))
README_EXAMPLE = """\
name: Captain Barnacle                 # required: the name HA and voice commands use
description: A cheerful retired pirate who answers in nautical slang.
aliases: [pirate, the pirate, captain] # other names for voice commands
prompt:
  identity: You are Captain Barnacle.  # required
  style:                               # how the persona talks
    - Speak like a pirate.
  examples:                            # few-shot exchanges
    - user: What time is it?
      assistant: Half past four, matey!
voice:
  model: en_US-joe-medium              # a Piper voice
  speed: 0.9                           # 0.5 - 2.0
fallbacks:
  backend_down: Arr.
"""


def comments(text: str) -> list[str]:
    return [
        line.split("#", 1)[1] for line in text.splitlines() if line.lstrip().startswith("#") or " # " in line
    ]


def test_one_changed_value_changes_one_line_and_keeps_every_comment() -> None:
    changed = apply_changes(README_EXAMPLE, {"voice": {"speed": 1.2}})
    assert changed.comments_kept
    assert changed.text == README_EXAMPLE.replace("speed: 0.9 ", "speed: 1.2 ")
    styled = apply_changes(
        README_EXAMPLE, {"prompt": {"style": ["Be brief.", "Say arr."]}, "aliases": ["cap"]}
    )
    assert (
        "style:                               # how the persona talks\n    - Be brief.\n    - Say arr.\n"
        in (styled.text)
    )
    assert "aliases: [cap] # other names for voice commands" in styled.text  # a flow list stays a flow list
    assert comments(styled.text) == comments(README_EXAMPLE)


def test_keys_are_added_in_place_removed_whole_and_unknown_keys_kept() -> None:
    text = (
        "# top\nname: x\nx_note: keep me  # a key the studio does not know\nprompt:\n  identity: i\n# end\n"
    )
    result = apply_changes(
        text, {"greeting": "Hi!", "prompt": {"rules": ["Be kind."]}, "voice": {"speed": 1.2}}
    )
    assert result.text == (
        "# top\nname: x\nx_note: keep me  # a key the studio does not know\nprompt:\n  identity: i\n"
        "  rules:\n    - Be kind.\ngreeting: Hi!\nvoice:\n  speed: 1.2\n# end\n"
    )
    removed = apply_changes(
        result.text, {"greeting": None, "voice": {"speed": None}, "prompt": {"rules": None}}
    )
    assert removed.text == text


def test_block_scalars_empty_values_and_awkward_text() -> None:
    text = "name: x\ngreeting:\nprompt:\n  identity: |\n    line one\n    line two\n\n  style: []\n"
    awkward = "Don't: #1 — \"quoted\", 'single'\nand a second line"
    result = apply_changes(
        text, {"greeting": awkward, "prompt": {"identity": "short", "style": ["a: b", "- c"]}}
    )
    assert result.comments_kept
    assert yaml.safe_load(result.text) == {
        "name": "x",
        "greeting": awkward,
        "prompt": {"identity": "short", "style": ["a: b", "- c"]},
    }


def test_a_new_document_is_plain_block_yaml() -> None:
    data = {
        "name": "n",
        "prompt": {"identity": "i", "examples": [{"user": "u", "assistant": "a"}]},
        "aliases": [],
    }
    assert render_document(data) == (
        "name: n\nprompt:\n  identity: i\n  examples:\n    - user: u\n      assistant: a\naliases: []\n"
    )
    assert apply_changes("# only a comment\n", data).text == "# only a comment\n" + render_document(data)


TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
LINES = st.lists(TEXT, max_size=4)
FIELDS = {
    "name": TEXT,
    "description": st.one_of(st.none(), TEXT),
    "greeting": st.one_of(st.none(), TEXT),
    "aliases": st.one_of(st.none(), LINES),
    "x_custom": st.one_of(st.none(), TEXT, st.integers()),
    "prompt": st.fixed_dictionaries(
        {},
        optional={
            "identity": TEXT,
            "style": st.one_of(st.none(), LINES),
            "rules": LINES,
            "examples": st.lists(st.fixed_dictionaries({"user": TEXT, "assistant": TEXT}), max_size=3),
        },
    ),
    "voice": st.fixed_dictionaries(
        {},
        optional={
            "speed": st.floats(0.5, 2.0),
            "pitch": st.one_of(st.none(), st.floats(-12, 12)),
            "speaker": st.one_of(st.none(), st.integers(0, 5), TEXT),
        },
    ),
    "llm": st.fixed_dictionaries({}, optional={"temperature": st.one_of(st.none(), st.floats(0, 2))}),
    "home": st.fixed_dictionaries({}, optional={"turned_on": LINES, "declined": st.none()}),
}


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from([*FILES, None]), changes=st.fixed_dictionaries({}, optional=FIELDS))
def test_any_change_gives_exactly_the_intended_document_and_keeps_the_comments(path, changes) -> None:
    original = path.read_text() if path else README_EXAMPLE
    result = apply_changes(original, changes)
    assert yaml.safe_load(result.text) == merge(yaml.safe_load(original), changes)
    assert result.comments_kept
    # A comment line outside the lists that changed is still there.
    kept = set(result.text.splitlines())
    changed_lists = {key for key, value in changes.items() if isinstance(value, list)}
    for line in original.splitlines():
        if line.lstrip().startswith("#") and not changed_lists & set(re.findall(r"\w+", line)):
            assert line in kept


def test_the_studio_diff_of_an_untouched_persona_is_empty() -> None:
    for path in FILES:
        current = spec_json(load_file(path).spec)
        assert changed_values(current, current) == {}
        draft = {**current, "voice": {**current["voice"], "speed": 1.35}}
        assert changed_values(draft, current) == {"voice": {"speed": 1.35}}
