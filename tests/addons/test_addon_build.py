"""How the add-on images get their code: the committed wheel, the hash-pinned requirements, the versions,
and which models they carry (the VAD's Silero file) or download on first start (ASR, persona).

The wheel test builds the package from the current source (scripts/addon-wheels.sh, network for the
pinned build backend on a first run) and compares file names and bytes with the copy in each add-on folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from wyoming_persona.agent.models import CATALOG
from wyoming_persona.asr.models import PACKAGED_MODELS
from wyoming_persona.model_pins import WHEELS
from wyoming_persona.services import SERVICES
from wyoming_persona.vad.silero import MODEL_FILE

REPO = Path(__file__).resolve().parents[2]
ADDONS_DIR = REPO / "addons"
SLUGS = sorted({service.addon for service in SERVICES if service.addon})
OWN = "wyoming-persona"
# Each image carries its service and only the models it cannot download on first start.
EXTRAS = {
    "asr": {"asr"},
    "tts": {"tts", "models-tts"},
    "vad": {"vad"},
    "persona": {"llm", "llamacpp", "mqtt", "home"},
}
# The images' Python (Debian trixie's python3), for dependencies with environment markers.
IMAGE_PYTHON = {"python_version": "3.13", "python_full_version": "3.13.5", "sys_platform": "linux"}
REQUIREMENT = re.compile(r"^(?P<name>[a-z0-9][a-z0-9.-]*)==(?P<version>\S+)$")
HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _version() -> str:
    return _pyproject()["project"]["version"]


def _constraints() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonical(name)] = version.strip()
    return pins


def _pins(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a hash-pinned requirements file; fails on any other kind of line."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    pins: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement, *hashes = line.split()
        match = REQUIREMENT.match(requirement)
        assert match, f"{path.relative_to(REPO)}: not a name==version pin: {requirement!r}"
        assert hashes and all(HASH.match(h) for h in hashes), f"{path.relative_to(REPO)}: {requirement}"
        pins[match["name"]] = (match["version"], hashes)
    return pins


def _wheel_files(path: Path) -> dict[str, bytes]:
    """The wheel's files by name; METADATA without its long description (the README text, which does
    not change what is installed) and RECORD left out (it only hashes the other files)."""
    files: dict[str, bytes] = {}
    with zipfile.ZipFile(path) as wheel:
        for name in wheel.namelist():
            if name.endswith(".dist-info/RECORD"):
                continue
            data = wheel.read(name)
            if name.endswith(".dist-info/METADATA"):
                data = data.split(b"\n\n", 1)[0]
            files[name] = data
    return files


@pytest.fixture(scope="module")
def fresh_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel scripts/addon-wheels.sh builds from the current source."""
    result = subprocess.run(
        ["bash", "scripts/addon-wheels.sh", "--out", str(tmp_path_factory.mktemp("wheel"))],
        cwd=REPO,
        env={**os.environ, "PYTHON": sys.executable},  # the venv running the tests (.venv or .venv313)
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"scripts/addon-wheels.sh failed:\n{result.stderr}"
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("slug", SLUGS)
def test_committed_wheel_matches_source(slug: str, fresh_wheel: Path) -> None:
    committed = sorted((ADDONS_DIR / slug / "wheels").glob("*.whl"))
    assert [p.name for p in committed] == [fresh_wheel.name], (
        f"addons/{slug}/wheels holds {[p.name for p in committed]}, the source builds {fresh_wheel.name}: "
        "run make addon-wheels"
    )
    want, have = _wheel_files(fresh_wheel), _wheel_files(committed[0])
    changed = sorted(name for name in want.keys() | have.keys() if want.get(name) != have.get(name))
    assert not changed, f"addons/{slug}/wheels is stale ({', '.join(changed[:8])}): run make addon-wheels"


@pytest.mark.parametrize("slug", SLUGS)
def test_requirements_pinned_hashed_and_complete(slug: str) -> None:
    path = ADDONS_DIR / slug / "requirements.txt"
    header = re.search(r"wyoming-persona\[([a-z0-9,-]+)\]", path.read_text())
    assert header, f"{path.relative_to(REPO)}: no header; run scripts/addon-requirements.sh"
    assert set(header[1].split(",")) == EXTRAS[slug]
    pins = _pins(path)
    assert OWN not in pins, "our own package must come from the wheel, never by name from an index"
    constraints = _constraints()
    for name, (version, _) in pins.items():
        assert constraints.get(name) == version, (
            f"{path.relative_to(REPO)}: {name}=={version}, constraints.txt says {constraints.get(name)}: "
            "run scripts/addon-requirements.sh"
        )
    # Every dependency the wheel declares for this add-on's extras is pinned here.
    project = _pyproject()["project"]
    wanted = list(project["dependencies"])
    for extra in EXTRAS[slug]:
        wanted += project["optional-dependencies"][extra]
    for spec in wanted:
        requirement = Requirement(spec)
        if requirement.marker and not requirement.marker.evaluate(IMAGE_PYTHON):
            continue
        assert canonical(requirement.name) in pins, f"{path.relative_to(REPO)} lacks {requirement.name}"
        assert pins[canonical(requirement.name)][0] in requirement.specifier


def _model_packages() -> dict[str, set[str]]:
    """The model packages each image installs (the rest are downloaded on first start)."""
    extras = _pyproject()["project"]["optional-dependencies"]
    tts = {canonical(Requirement(spec).name) for spec in extras["models-tts"]}
    return {"asr": set(), "tts": tts, "vad": set(), "persona": set()}


def _every_model_package() -> set[str]:
    extras = _pyproject()["project"]["optional-dependencies"]
    names = {
        canonical(Requirement(spec).name)
        for name in ("models-asr", "models-tts", "models-llm")
        for spec in extras[name]
    }
    return names | {canonical(p) for entry in CATALOG.values() for p in entry.packages}


@pytest.mark.parametrize("slug", SLUGS)
def test_image_carries_only_its_models_and_engine(slug: str) -> None:
    installed = set(_pins(ADDONS_DIR / slug / "requirements.txt"))
    assert installed & _every_model_package() == _model_packages()[slug]
    # What another service needs: the VAD image is onnxruntime and the Silero file, nothing of Whisper.
    foreign = {
        "vad": {
            "faster-whisper",
            "ctranslate2",
            "av",
            "huggingface-hub",
            "tokenizers",
            "piper-tts",
            "llama-cpp-python",
        },
        "asr": {"piper-tts", "llama-cpp-python"},
        "tts": {"faster-whisper", "ctranslate2", "llama-cpp-python"},
        "persona": {"faster-whisper", "ctranslate2", "piper-tts", "onnxruntime"},
    }[slug]
    assert not installed & foreign, f"the {slug} image needs no {sorted(installed & foreign)}"


def test_vad_takes_faster_whispers_silero_file_without_installing_it() -> None:
    folder = ADDONS_DIR / "vad"
    pins = _pins(folder / "models.txt")
    assert list(pins) == ["faster-whisper"]
    assert pins["faster-whisper"][0] == _constraints()["faster-whisper"], "the file the ASR image trims with"
    dockerfile = (folder / "Dockerfile").read_text()
    download = re.search(r"pip download ([^&]+)", dockerfile.replace("\\\n", " "))
    assert download and "--require-hashes" in download[1] and "--no-deps" in download[1]
    assert (
        "--index-url https://pypi.org/simple" in download[1] and "-r /tmp/install/models.txt" in download[1]
    )
    assert f"faster_whisper/assets/{MODEL_FILE}" in dockerfile
    assert f"/usr/share/wyoming-persona/{MODEL_FILE}" in dockerfile
    run = (folder / "rootfs/etc/s6-overlay/s6-rc.d/vad/run").read_text()
    assert f"--vad-model /usr/share/wyoming-persona/{MODEL_FILE}" in run


def test_persona_image_carries_no_weights_and_downloads_the_chosen_model() -> None:
    folder = ADDONS_DIR / "persona"
    assert not (folder / "models.txt").exists() and not (folder / "join_models.py").exists()
    dockerfile = (folder / "Dockerfile").read_text()
    assert "models" not in re.sub(r"#.*", "", dockerfile).replace("/data/models", ""), "no model in the image"
    run = (folder / "rootfs/etc/s6-overlay/s6-rc.d/persona/run").read_text()
    assert "'--model-cache-dir' '/data/models' '--download-models'" in run
    assert "--prompt-cache-dir /data/prompts" in run
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert set(config["backup_exclude"]) == {"models*", "prompts*"}
    for entry in CATALOG.values():  # each model can be downloaded, from pinned wheels
        assert all(WHEELS[p].version == entry.version for p in entry.packages)


def test_asr_model_option_follows_the_whisper_add_on() -> None:
    folder = ADDONS_DIR / "asr"
    config = yaml.safe_load((folder / "config.yaml").read_text())
    choices = re.fullmatch(r"list\((.+)\)", config["schema"]["model"])
    assert choices and choices[1].split("|") == [*PACKAGED_MODELS, "custom"]
    assert config["schema"]["custom_model"] == "str?"
    assert config["backup_exclude"] == ["models*"]
    run = (folder / "rootfs/etc/s6-overlay/s6-rc.d/asr/run").read_text()
    assert "--cache-dir /data/models" in run and "--download-models" in run
    assert "bashio::config 'custom_model'" in run
    for model in PACKAGED_MODELS.values():
        assert all(WHEELS[part.package].version == part.version for part in model.parts)


def test_persona_model_option_is_the_catalog_and_defaults_to_make_run() -> None:
    config = yaml.safe_load((ADDONS_DIR / "persona/config.yaml").read_text())
    choices = re.fullmatch(r"list\((.+)\)", config["schema"]["model"])
    assert choices and set(choices[1].split("|")) == set(CATALOG)
    suite_args = next(s.suite_args for s in SERVICES if s.name == "persona")
    assert config["options"]["model"] == suite_args[suite_args.index("--model") + 1]
    run = (ADDONS_DIR / "persona" / "rootfs/etc/s6-overlay/s6-rc.d/persona/run").read_text()
    assert "flags+=('--model' \"$(bashio::config 'model')\"" in run


def test_versions_move_together() -> None:
    """pyproject, each add-on's config.yaml, CHANGELOG.md top entry, wheel and Dockerfile ARG agree."""
    version = _version()
    found = {}
    for slug in SLUGS:
        folder = ADDONS_DIR / slug
        found[f"{slug}/config.yaml"] = yaml.safe_load((folder / "config.yaml").read_text())["version"]
        top = re.search(r"^## (\S+)", (folder / "CHANGELOG.md").read_text(), re.M)
        found[f"{slug}/CHANGELOG.md"] = top[1] if top else None
        wheels = [p.name.split("-")[1] for p in (folder / "wheels").glob("wyoming_persona-*.whl")]
        found[f"{slug}/wheels"] = ",".join(wheels)
        arg = re.search(r"^ARG WYOMING_PERSONA_VERSION=(\S+)$", (folder / "Dockerfile").read_text(), re.M)
        found[f"{slug}/Dockerfile"] = arg[1] if arg else None
    wrong = {where: found_version for where, found_version in found.items() if found_version != version}
    assert not wrong, f"pyproject.toml says {version}; these differ: {wrong}"
