"""Persona files are polled off the event loop; reads are memory only; a broken folder is parsed once."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from wyoming_persona.personas import PersonaManager
from wyoming_persona.personas import manager as manager_module
from wyoming_persona.personas.state import ActivePersonaStore

WAIT = 20  # seconds; generous because other test suites share the CPU
BROKEN = "name: [broken\n"


@dataclass
class Calls:
    """Which threads called a wrapped function."""

    threads: list[int] = field(default_factory=list)

    def wrap(self, func: Callable) -> Callable:
        def counted(*args, **kwargs):
            self.threads.append(threading.get_ident())
            return func(*args, **kwargs)

        return counted

    def __len__(self) -> int:
        return len(self.threads)


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Every parse of the personas folder by the manager."""
    calls = Calls()
    monkeypatch.setattr(manager_module, "load_folder", calls.wrap(manager_module.load_folder))
    return calls


@pytest.fixture
def polls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Every listing of the personas folder by the manager (one per refresh)."""
    calls = Calls()
    monkeypatch.setattr(manager_module, "persona_files", calls.wrap(manager_module.persona_files))
    return calls


@pytest.fixture
def state_reads(monkeypatch: pytest.MonkeyPatch) -> Calls:
    calls = Calls()
    monkeypatch.setattr(ActivePersonaStore, "read", calls.wrap(ActivePersonaStore.read))
    return calls


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for a condition the background watcher makes true (bounded, never a timed assert)."""
    try:
        async with asyncio.timeout(WAIT):
            while not condition():  # noqa: ASYNC110 - the condition lives in another thread's work
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"timed out waiting until {what}")


def test_a_broken_folder_is_parsed_once_per_change(personas_dir: Path, state_dir: Path, loads: Calls) -> None:
    mgr = PersonaManager(personas_dir, state_dir, refresh_interval=0.0)
    assert len(loads) == 1
    good = mgr.snapshot
    (personas_dir / "pirate.yaml").write_text(BROKEN, encoding="utf-8")
    results = [mgr.refresh() for _ in range(5)]
    for _ in range(5):
        assert mgr.snapshot is good and mgr.active().id == "assistant" and mgr.get("pirate")
    assert len(loads) == 2, "an unchanged broken folder must not be parsed again"
    assert all(not r.ok and r.errors[0].path.name == "pirate.yaml" for r in results)
    assert mgr.last_errors == results[0].errors

    (personas_dir / "pirate.yaml").write_text(BROKEN + "more: [broken\n", encoding="utf-8")
    assert not mgr.refresh().ok and not mgr.refresh().ok
    assert len(loads) == 3, "a new change of the broken file is parsed once"

    (personas_dir / "pirate.yaml").unlink()
    result = mgr.refresh()
    assert result.ok and result.changed and "pirate" not in mgr.personas and mgr.last_errors == ()
    mgr.refresh()
    assert len(loads) == 4


def test_reads_never_touch_the_files(
    personas_dir: Path, state_dir: Path, loads: Calls, polls: Calls, state_reads: Calls
) -> None:
    mgr = PersonaManager(personas_dir, state_dir, refresh_interval=0.0)
    before = (len(loads), len(polls), len(state_reads))
    (personas_dir / "pirate.yaml").write_text(BROKEN, encoding="utf-8")
    ActivePersonaStore(state_dir).write("coach")
    for _ in range(3):
        assert "pirate" in mgr.personas and mgr.get("robot") and mgr.snapshot.ids()
        assert mgr.active().id == "assistant"
    assert (len(loads), len(polls), len(state_reads)) == before
    mgr.refresh()
    assert mgr.active().id == "coach", "the next refresh reads the switch"


def test_a_switch_in_this_process_is_seen_at_once(personas_dir: Path, state_dir: Path) -> None:
    mgr = PersonaManager(personas_dir, state_dir)
    assert mgr.set_active("butler").id == "butler"
    assert mgr.active().id == "butler"
    mgr.refresh()
    assert mgr.active().id == "butler"


def test_an_unchanged_state_file_is_not_read_again(
    personas_dir: Path, state_dir: Path, state_reads: Calls
) -> None:
    ActivePersonaStore(state_dir).write("robot")
    mgr = PersonaManager(personas_dir, state_dir)
    reads = len(state_reads)
    for _ in range(3):
        mgr.refresh()
    assert len(state_reads) == reads and mgr.active().id == "robot"


async def test_the_watcher_parses_a_broken_folder_once(
    personas_dir: Path, state_dir: Path, loads: Calls, polls: Calls
) -> None:
    mgr = PersonaManager(personas_dir, state_dir, refresh_interval=0.05)
    loop_thread = threading.get_ident()
    async with mgr.watching():
        (personas_dir / "coach.yaml").write_text(BROKEN, encoding="utf-8")
        await until(lambda: bool(mgr.last_errors), "the watcher saw the broken file")
        seen = len(polls)
        await until(lambda: len(polls) >= seen + 5, "the watcher polled five more times")
        assert len(loads) == 2, "initial load + one parse of the broken folder"
        assert "coach" in mgr.personas, "the last good snapshot stays"
    assert loads.threads[0] == polls.threads[0] == loop_thread  # the constructor: the synchronous path
    assert loop_thread not in loads.threads[1:] + polls.threads[1:]


async def test_the_watcher_picks_up_an_edit_and_a_switch_by_another_process(
    personas_dir: Path, state_dir: Path, loads: Calls, state_reads: Calls
) -> None:
    mgr = PersonaManager(personas_dir, state_dir, refresh_interval=0.05)
    loop_thread = threading.get_ident()
    robot = personas_dir / "robot.yaml"
    async with mgr.watching():
        robot.write_text(robot.read_text().replace("name: Unit Seven", "name: Unit Eight Hundred"))
        args = ["--personas-dir", str(personas_dir), "--state-dir", str(state_dir), "active", "coach"]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wyoming_persona", "personas", *args
        )
        async with asyncio.timeout(60):
            assert await process.wait() == 0
        await until(lambda: mgr.get("robot").name == "Unit Eight Hundred", "the edit was loaded")
        await until(lambda: mgr.active().id == "coach", "the switch by another process was seen")
    assert loop_thread not in loads.threads[1:] + state_reads.threads[1:]


async def test_watch_yields_reloads_and_switches(personas_dir: Path, state_dir: Path) -> None:
    mgr = PersonaManager(personas_dir, state_dir, refresh_interval=0.05)
    changes = mgr.watch(interval=0.02)
    try:
        async with asyncio.timeout(WAIT):
            snapshot, active = await anext(changes)
            assert active.id == "assistant" and "newbie" not in snapshot.personas
            (personas_dir / "newbie.yaml").write_text("name: Newbie\nprompt:\n  identity: You are new.\n")
            snapshot, active = await anext(changes)
            assert "newbie" in snapshot.personas
            ActivePersonaStore(state_dir).write("newbie")  # another process switches
            snapshot, active = await anext(changes)
            assert active.id == "newbie"
    finally:
        await changes.aclose()
    assert mgr._watch_task is None, "the last watcher user stops the polling task"


def test_removing_a_broken_new_file_clears_the_errors(personas_dir: Path, state_dir: Path) -> None:
    mgr = PersonaManager(personas_dir, state_dir)
    good = mgr.snapshot
    (personas_dir / "extra.yaml").write_text(BROKEN, encoding="utf-8")
    assert not mgr.refresh().ok and mgr.last_errors
    (personas_dir / "extra.yaml").unlink()
    assert mgr.refresh().ok and mgr.last_errors == () and mgr.snapshot is good
