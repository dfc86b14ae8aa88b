"""`wyoming-persona personas ...` as a user runs it: output and exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "wyoming_persona", "personas"]


def run(*args: str, dirs: tuple[Path, Path] | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--personas-dir", str(dirs[0]), "--state-dir", str(dirs[1])] if dirs else []
    return subprocess.run([*CLI, *extra, *args], capture_output=True, text=True, timeout=60)


def test_check_shipped_folder_exits_0(personas_dir: Path) -> None:
    done = run("check", str(personas_dir))
    assert done.returncode == 0, done.stderr
    assert "5 personas OK" in done.stdout


def test_check_broken_folder_prints_located_errors_and_exits_1(personas_dir: Path) -> None:
    broken = personas_dir / "pirate.yaml"
    broken.write_text(broken.read_text().replace("pitch: -2.0", "pitch: -20").replace("speed:", "sped:"))
    done = run("check", str(personas_dir))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert any(line.startswith(f"{broken}:") and ": voice.pitch: " in line for line in lines), lines
    assert any(": voice.sped: unknown key; did you mean 'speed'?" in line for line in lines), lines
    assert "Traceback" not in done.stderr
    assert lines[-1] == f"2 error(s) in {personas_dir}"


def test_list_show_and_active(personas_dir: Path, state_dir: Path) -> None:
    dirs = (personas_dir, state_dir)
    listing = run("list", dirs=dirs)
    assert listing.returncode == 0
    assert listing.stdout.splitlines()[0].startswith("* assistant")

    shown = run("show", "butler", dirs=dirs)
    assert shown.returncode == 0
    assert "You are Jeeves" in shown.stdout and "pitch=-3 semitones" in shown.stdout

    assert run("active", "pirate", dirs=dirs).stdout.strip() == "pirate"
    assert run("active", dirs=dirs).stdout.strip() == "pirate"
    assert run("list", dirs=dirs).stdout.count("* pirate") == 1


def test_unknown_persona_exits_2_with_the_known_ids(personas_dir: Path, state_dir: Path) -> None:
    done = run("active", "wizard", dirs=(personas_dir, state_dir))
    assert done.returncode == 2
    assert "unknown persona 'wizard'; known personas: assistant, butler" in done.stderr
    assert run("show", "wizard", dirs=(personas_dir, state_dir)).returncode == 2


def test_broken_folder_fails_other_commands_with_errors(personas_dir: Path, state_dir: Path) -> None:
    (personas_dir / "coach.yaml").write_text("name: 5\n")
    done = run("list", dirs=(personas_dir, state_dir))
    assert done.returncode == 1
    assert "coach.yaml:1:7: name: expected text, got an integer '5'" in done.stderr
