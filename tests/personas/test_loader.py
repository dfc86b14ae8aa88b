"""Persona files: good ones load, bad ones report every error with file, line and column."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from wyoming_persona.personas import PersonaLoadError, load_file, load_folder
from wyoming_persona.personas.model import DEFAULT_VOICE

GOOD = """\
name: Test Bot
description: A persona for tests.
prompt:
  identity: You are Test Bot.
  style: [Be brief.]
voice:
  speed: 1.25
  pitch: -3
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(PersonaLoadError) as info:
        load_file(path)
    return [str(e) for e in info.value.errors]


def test_shipped_personas_are_valid_and_distinct(personas_dir: Path) -> None:
    personas = load_folder(personas_dir)
    assert len(personas) >= 5
    assert "assistant" in personas
    voices = {(p.voice.speed, p.voice.pitch) for p in personas.values()}
    assert len(voices) == len(personas), "each persona should sound different"
    styles = {p.spec.prompt.style for p in personas.values()}
    assert len(styles) == len(personas)


def test_good_file_loads_with_defaults(tmp_path: Path) -> None:
    persona = load_file(write(tmp_path, "test_bot.yaml", GOOD))
    assert persona.id == "test_bot"
    assert persona.name == "Test Bot"
    assert persona.voice.speed == 1.25
    assert persona.voice.pitch == -3.0 and isinstance(persona.voice.pitch, float)
    assert persona.voice.model == DEFAULT_VOICE
    assert persona.language == "en"
    assert persona.greeting == "Hello, Test Bot here."
    assert persona.spec.prompt.style == ("Be brief.",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            GOOD + "colour: red\n",
            ["9:1: colour: unknown key"],
            id="unknown-key",
        ),
        pytest.param(
            GOOD.replace("  pitch: -3\n", "  pitch: -3\n  speed: 2\n"),
            ["9:3: voice.speed: duplicate key"],
            id="duplicate-key",
        ),
        pytest.param(
            GOOD.replace("speed: 1.25", "speed: fast"),
            ["7:10: voice.speed: expected a number, got text 'fast'"],
            id="wrong-type",
        ),
        pytest.param(
            GOOD.replace("pitch: -3", "pitch: 20"),
            ["8:10: voice.pitch: 20.0 is out of range [-12.0, 12.0]"],
            id="out-of-range",
        ),
        pytest.param(
            GOOD.replace("name: Test Bot\n", ""),
            ["1:1: name: required field is missing"],
            id="missing-required",
        ),
        pytest.param(
            GOOD.replace("  style: [Be brief.]", "  style:\n    - {a: 1}"),
            ["6:7: prompt.style[0]: expected text, got a mapping"],
            id="wrong-type-in-list",
        ),
        pytest.param(
            GOOD.replace("description: A persona for tests.", 'description: "unterminated'),
            ["9:1: (yaml): while scanning a quoted scalar"],
            id="syntax-error",
        ),
        pytest.param("", ["1:1: (document): empty file"], id="empty-file"),
        pytest.param("- just\n- a list\n", ["1:1: (document): expected a mapping"], id="not-a-mapping"),
        pytest.param(
            GOOD.replace("  identity: You are Test Bot.", '  identity: "  "'),
            ["4:13: prompt.identity: must not be empty"],
            id="empty-identity",
        ),
    ],
)
def test_bad_file_reports_exact_location(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = write(tmp_path, "bot.yaml", text)
    errors = errors_of(path)
    assert len(errors) == len(expected), errors
    for error, want in zip(errors, expected, strict=True):
        assert error.startswith(f"{path}:{want}"), error


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace("speed: 1.25", "speed: 9").replace("pitch: -3", "pitch: high") + "extra: 1\n"
    path = write(tmp_path, "bot.yaml", text)
    errors = errors_of(path)
    fields = [e.split(": ")[1] for e in errors]
    assert fields == ["voice.speed", "voice.pitch", "extra"], errors
    assert all(e.startswith(f"{path}:") for e in errors)


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    path = write(tmp_path, "bot.yaml", GOOD.replace("description:", "descripton:"))
    (error,) = errors_of(path)
    assert "did you mean 'description'?" in error


def test_bad_file_name_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "Bad Name.yaml", GOOD)
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:1:1: (file): file name must be")


def test_folder_collects_errors_of_all_files(tmp_path: Path) -> None:
    write(tmp_path, "good.yaml", GOOD)
    write(tmp_path, "one.yaml", GOOD.replace("pitch: -3", "pitch: 99"))
    write(tmp_path, "two.yaml", GOOD + "bogus: 1\n")
    with pytest.raises(PersonaLoadError) as info:
        load_folder(tmp_path)
    files = sorted(e.path.name for e in info.value.errors)
    assert files == ["one.yaml", "two.yaml"]


def test_empty_or_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PersonaLoadError, match=r"no \*\.yaml persona files"):
        load_folder(tmp_path)
    with pytest.raises(PersonaLoadError, match="no such directory"):
        load_folder(tmp_path / "missing")
