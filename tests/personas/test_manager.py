"""Snapshots, reloads, hot reload and the shared, persisted active persona."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType

import pytest

from wyoming_persona.personas import PersonaLoadError, PersonaManager, UnknownPersonaError
from wyoming_persona.personas.state import STATE_FILE

CLI = [sys.executable, "-m", "wyoming_persona", "personas"]


def manager(personas_dir: Path, state_dir: Path, interval: float = 0.0) -> PersonaManager:
    return PersonaManager(personas_dir, state_dir, "assistant", refresh_interval=interval)


def test_snapshot_is_immutable(personas_dir: Path, state_dir: Path) -> None:
    snapshot = manager(personas_dir, state_dir).snapshot
    assert isinstance(snapshot.personas, MappingProxyType)
    with pytest.raises(TypeError):
        snapshot.personas["x"] = snapshot.personas["pirate"]  # type: ignore[index]


def test_reload_swaps_and_broken_folder_keeps_last_good(personas_dir: Path, state_dir: Path) -> None:
    mgr = manager(personas_dir, state_dir, interval=3600)
    before = mgr.snapshot
    (personas_dir / "pirate.yaml").write_text("name: [broken\n", encoding="utf-8")
    result = mgr.reload()
    assert not result.ok
    assert result.errors[0].path.name == "pirate.yaml" and result.errors[0].line == 2
    assert mgr.snapshot is before and "pirate" in mgr.personas
    assert mgr.last_errors == result.errors

    (personas_dir / "pirate.yaml").unlink()
    result = mgr.reload()
    assert result.ok and result.changed
    assert "pirate" not in mgr.personas and mgr.last_errors == ()


def test_edit_on_disk_is_picked_up_without_restart(personas_dir: Path, state_dir: Path) -> None:
    mgr = manager(personas_dir, state_dir)
    path = personas_dir / "robot.yaml"
    path.write_text(path.read_text().replace("name: Unit Seven", "name: Unit Eight Hundred"))
    assert mgr.refresh().changed  # what the background watcher does (test_manager_background.py)
    assert mgr.get("robot").name == "Unit Eight Hundred"
    (personas_dir / "newbie.yaml").write_text("name: Newbie\nprompt:\n  identity: You are new.\n")
    mgr.refresh()
    assert "newbie" in mgr.personas


def test_a_persona_made_and_switched_to_by_another_process_answers_at_once(
    personas_dir: Path, state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The studio saves a persona and makes it active; the agent's next request (before its
    watcher polls) speaks as it instead of falling back to the default."""
    agent = manager(personas_dir, state_dir, interval=3600)
    studio = manager(personas_dir, state_dir, interval=3600)
    (personas_dir / "newbie.yaml").write_text("name: Newbie\nprompt:\n  identity: You are new.\n")
    studio.reload()
    studio.set_active("newbie")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert agent.refresh_state().id == "newbie"
    assert "default persona" not in caplog.text


async def test_a_persona_made_by_another_process_is_found_for_a_request_at_once(
    personas_dir: Path, state_dir: Path
) -> None:
    """The studio saves a persona and chats with it at once (its chat pins that persona): the agent
    looks in the folder before calling it unknown (a fresh-clone CI run failed on this race)."""
    agent = manager(personas_dir, state_dir, interval=3600)
    (personas_dir / "newbie.yaml").write_text("name: Newbie\nprompt:\n  identity: You are new.\n")
    assert (await agent.lookup("newbie")).name == "Newbie"
    with pytest.raises(UnknownPersonaError):
        await agent.lookup("wizard")


def test_first_load_of_a_broken_folder_fails_loudly(personas_dir: Path, state_dir: Path) -> None:
    (personas_dir / "coach.yaml").write_text("name: Coach\n", encoding="utf-8")
    with pytest.raises(PersonaLoadError, match=r"coach.yaml:1:1: prompt: required field is missing"):
        manager(personas_dir, state_dir)


def test_active_persists_across_restart(personas_dir: Path, state_dir: Path) -> None:
    manager(personas_dir, state_dir).set_active("butler")
    assert manager(personas_dir, state_dir).active().id == "butler"
    data = json.loads((state_dir / STATE_FILE).read_text())
    assert data["active"] == "butler"


def test_unknown_persona_is_rejected_with_the_known_ones(personas_dir: Path, state_dir: Path) -> None:
    mgr = manager(personas_dir, state_dir)
    with pytest.raises(UnknownPersonaError) as info:
        mgr.set_active("wizard")
    assert "wizard" in str(info.value)
    assert info.value.known == ["assistant", "butler", "coach", "pirate", "robot"]
    assert not (state_dir / STATE_FILE).exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no state file"),
        ("{not json", "corrupt state file"),
        ('{"active": "ghost"}', "'ghost' is not in"),
        ('["pirate"]', "has no 'active' persona id"),
    ],
)
def test_bad_state_falls_back_to_default_with_warning(
    personas_dir: Path, state_dir: Path, caplog: pytest.LogCaptureFixture, content: str | None, problem: str
) -> None:
    if content is not None:
        (state_dir / STATE_FILE).write_text(content)
    with caplog.at_level(logging.WARNING):
        assert manager(personas_dir, state_dir).active().id == "assistant"
    assert problem in caplog.text and "using the default persona 'assistant'" in caplog.text


def test_change_by_another_process_is_seen(personas_dir: Path, state_dir: Path) -> None:
    mgr = manager(personas_dir, state_dir)
    assert mgr.active().id == "assistant"
    args = ["--personas-dir", str(personas_dir), "--state-dir", str(state_dir)]
    done = subprocess.run([*CLI, *args, "active", "coach"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    mgr.refresh()
    assert mgr.active().id == "coach"


def test_concurrent_writers_never_corrupt_the_state(personas_dir: Path, state_dir: Path) -> None:
    """Four processes switch persona 200 times each while this process keeps reading."""
    writer = (
        "import sys\n"
        "from wyoming_persona.personas.state import ActivePersonaStore\n"
        "store = ActivePersonaStore(sys.argv[1])\n"
        "for i in range(200):\n"
        "    store.write(sys.argv[2 + i % 2])\n"
    )
    pairs = [("pirate", "butler"), ("robot", "coach"), ("assistant", "pirate"), ("coach", "butler")]
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(state_dir), a, b]) for a, b in pairs]
    mgr = manager(personas_dir, state_dir)
    seen = set()
    while any(p.poll() is None for p in procs):
        stored = mgr.store.read()
        if stored.problem and "no state file" not in stored.problem:
            pytest.fail(stored.problem)
        if stored.persona_id:
            seen.add(stored.persona_id)
    assert all(p.wait(timeout=60) == 0 for p in procs)
    assert seen <= {"pirate", "butler", "robot", "coach", "assistant"}
    assert mgr.store.read().problem is None
    assert not list(state_dir.glob(".active-*")), "temporary files must not be left behind"
