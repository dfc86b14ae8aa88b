"""Static checks of the Home Assistant add-on repository (Docker cannot run here).

Every add-on: required config keys, slug and version rules, options in schema, translations and
DOCS, ports exposed, files named by the Dockerfile and the s6 scripts present, s6-rc layout valid,
and every flag a run script passes exists in `wyoming-persona <sub> --help`.
"""

from __future__ import annotations

import filecmp
import functools
import re
import struct
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from wyoming_persona.personas import load_folder
from wyoming_persona.services import SERVICES

REPO = Path(__file__).resolve().parents[2]
ADDONS_DIR = REPO / "addons"
EXPECTED = {service.addon for service in SERVICES if service.addon}
S6 = Path("rootfs/etc/s6-overlay/s6-rc.d")
REQUIRED_KEYS = (
    "name",
    "version",
    "slug",
    "description",
    "url",
    "arch",
    "init",
    "ports",
    "options",
    "schema",
)
SHARED_FOLDERS = {"tts", "persona"}  # add-ons that read the shared personas and state
NO_DISCOVERY = {"vad"}  # Info has no VAD section: HA would abort the flow with "no services"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
CONFIG_READ = re.compile(r"bashio::config(?:\.[a-z_]+)?\s+'([a-z_]+)'")
ABS_PATH = re.compile(r"(/(?:usr/lib/wyoming-persona|usr/share/wyoming-persona|etc/s6-overlay)[\w./-]*)")
LISTEN_PORT = re.compile(r"tcp://0\.0\.0\.0:(\d+)|--(?:ollama-api-)?port\s+(\d+)")
HEALTHCHECK = re.compile(
    r'HEALTHCHECK [^\n]*\\\n\s*CMD \["/usr/src/\.venv/bin/python3", "-m", "wyoming_persona\.healthcheck", '
    r'"tcp://127\.0\.0\.1:(\d+)"\]'
)
WHEEL_PATH = '"/tmp/install/wyoming_persona-${WYOMING_PERSONA_VERSION}-py3-none-any.whl"'


def _version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def _extras() -> set[str]:
    return set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def _config(slug: str) -> dict:
    return yaml.safe_load((ADDONS_DIR / slug / "config.yaml").read_text())


def _scripts(slug: str) -> list[Path]:
    """Shell scripts of an add-on: s6 run/finish files and helpers under /usr/lib."""
    root = ADDONS_DIR / slug / "rootfs"
    names = {"run", "finish"}
    return sorted(p for p in root.rglob("*") if p.is_file() and (p.name in names or p.suffix == ".sh"))


def _code(path: Path) -> str:
    """Script text without comment lines and shebang."""
    return "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))


@functools.cache
def _cli_flags(sub: str) -> frozenset[str]:
    result = subprocess.run(
        [sys.executable, "-m", "wyoming_persona", sub, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    if result.returncode != 0:
        pytest.fail(
            f"`wyoming-persona {sub} --help` failed (exit {result.returncode}): the add-on needs this "
            f"subcommand.\n{result.stderr.strip()}"
        )
    return frozenset(FLAG.findall(result.stdout))


def addons() -> list[str]:
    return sorted(p.parent.name for p in ADDONS_DIR.glob("*/config.yaml"))


def test_repository_yaml() -> None:
    repo = yaml.safe_load((REPO / "repository.yaml").read_text())
    assert set(repo) >= {"name", "url", "maintainer"}
    assert repo["url"].startswith("https://")
    assert re.fullmatch(r"[^<>]+ <[^@<>\s]+@[^@<>\s]+\.[a-z]+>", repo["maintainer"]), repo["maintainer"]
    assert not repo["maintainer"].endswith(".invalid>"), "a maintainer people can reach"
    assert set(addons()) == EXPECTED
    # The Supervisor treats any config.yaml below the repository root as an add-on.
    stray = [p for p in REPO.rglob("config.yaml") if p.parent.parent != ADDONS_DIR and ".venv" not in p.parts]
    assert stray == []


@pytest.mark.parametrize("slug", sorted(EXPECTED))
def test_config_keys_slug_version(slug: str) -> None:
    config = _config(slug)
    missing = [key for key in REQUIRED_KEYS if key not in config]
    assert not missing, f"{slug}/config.yaml lacks {missing}"
    assert config["slug"] == slug and re.fullmatch(r"[a-z0-9_]+", slug)
    assert isinstance(config["version"], str) and config["version"] == _version()
    assert config["arch"] == ["amd64", "aarch64"]
    assert config["init"] is False
    repo_url = yaml.safe_load((REPO / "repository.yaml").read_text())["url"]
    assert config["url"].startswith(repo_url)
    if slug in NO_DISCOVERY:
        assert "discovery" not in config
    else:
        assert config["discovery"] == ["wyoming"]
    if slug in SHARED_FOLDERS:
        assert "share:rw" in config["map"]
    assert ("mqtt:want" in config.get("services", [])) == (slug == "persona")


@pytest.mark.parametrize("slug", sorted(EXPECTED))
def test_config_pulls_a_published_image_and_says_what_it_needs(slug: str) -> None:
    """The Supervisor pulls `image` (built and pushed by the release) instead of building on the user's
    machine; the add-ons are experimental and need the Home Assistant release they were tested with."""
    config = _config(slug)
    assert config["image"] == f"ghcr.io/wyoming-persona/{{arch}}-addon-{slug}"
    assert config["stage"] == "experimental"
    assert isinstance(config["homeassistant"], str)
    assert tuple(map(int, config["homeassistant"].split("."))) >= (2026, 2, 0)
    assert not (ADDONS_DIR / slug / "build.yaml").exists(), "build.yaml is deprecated (Supervisor 2026.04)"


@pytest.mark.parametrize("slug", sorted(EXPECTED))
def test_options_schema_translations_docs(slug: str) -> None:
    config = _config(slug)
    options, schema = config["options"], config["schema"]
    assert set(options) <= set(schema), f"options without schema: {set(options) - set(schema)}"
    for key, rule in schema.items():
        optional = isinstance(rule, str) and rule.endswith("?")
        assert optional or key in options, f"{slug}: required option {key!r} has no default"
    translations = yaml.safe_load((ADDONS_DIR / slug / "translations/en.yaml").read_text())
    assert set(translations["configuration"]) == set(schema)
    for key, text in translations["configuration"].items():
        assert text.get("name") and text.get("description"), f"{slug}: translation of {key!r}"
    assert set(translations["network"]) == set(config["ports"])
    docs = (ADDONS_DIR / slug / "DOCS.md").read_text()
    undocumented = [key for key in schema if f"### Option: `{key}`" not in docs]
    assert not undocumented, f"{slug}/DOCS.md does not document {undocumented}"
    for key, rule in schema.items():
        section = docs.split(f"### Option: `{key}`", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
        described = translations["configuration"][key]["description"]
        choices = re.fullmatch(r"list\((.+)\)\??", rule) if isinstance(rule, str) else None
        named = choices[1].split("|") if choices else []
        for choice in named if len(named) <= 8 else ():  # a long list (languages) is described as such
            assert f"`{choice}`" in section, f"{slug}/DOCS.md, option {key}: choice {choice} is not described"
            assert choice in described, f"{slug} translation of {key} does not name {choice}"
        if key in options and not isinstance(options[key], (list, bool)):
            default = str(options[key])
            assert f"`{default}`" in section, (
                f"{slug}/DOCS.md, option {key}: the default {default} is not named"
            )
        for said in re.findall(r"\bdefault[: ]+\(?([\w.-]+)", described):
            assert key in options and said == str(options[key]), (
                f"{slug} translation of {key} says the default is {said}, config.yaml says {options.get(key)}"
            )


@pytest.mark.parametrize("slug", sorted(EXPECTED))
def test_run_scripts_read_only_known_options(slug: str) -> None:
    schema = _config(slug)["schema"]
    for script in _scripts(slug):
        unknown = set(CONFIG_READ.findall(script.read_text())) - set(schema)
        assert not unknown, f"{script.relative_to(REPO)} reads options not in the schema: {unknown}"


@pytest.mark.parametrize("slug", sorted(EXPECTED))
def test_ports_exposed(slug: str) -> None:
    config = _config(slug)
    declared = {int(port.split("/")[0]) for port in config["ports"]}
    listened: set[int] = set()
    for script in _scripts(slug):
        for tcp, port in LISTEN_PORT.findall(_code(script)):
            listened.add(int(tcp or port))
    assert listened == declared, f"{slug}: run scripts listen on {listened}, config exposes {declared}"
    table = {port for s in SERVICES if s.addon == slug for port in (s.port, *(p for _, p in s.side_ports))}
    assert declared == table, f"{slug}: config exposes {declared}, the services table says {table}"
    discovery = ADDONS_DIR / slug / S6 / "discovery/run"
    if slug not in NO_DISCOVERY:
        announced = set(map(int, re.findall(r"tcp://\$\(hostname\):(\d+)", discovery.read_text())))
        assert announced and announced <= declared
        waited = set(map(int, re.findall(r"/dev/tcp/127\.0\.0\.1/(\d+)", discovery.read_text())))
        assert waited == announced, "discovery must wait for the port it announces"
    else:
        assert not discovery.exists()
    dockerfile = (ADDONS_DIR / slug / "Dockerfile").read_text()
    health = set(map(int, HEALTHCHECK.findall(dockerfile)))
    assert health and health <= declared, "HEALTHCHECK must ask the service to describe itself"
    assert "/dev/tcp" not in dockerfile, "an open port is not a health check"
    assert config["watchdog"] == f"tcp://[HOST]:[PORT:{min(health)}]"


@pytest.mark.parametrize("slug", sorted(EXPECTED))
def test_dockerfile(slug: str) -> None:
    """Our code only from the wheel in the add-on folder; third-party packages only hash-pinned."""
    folder = ADDONS_DIR / slug
    lines = [
        line.strip()
        for line in (folder / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert re.fullmatch(r"ARG BUILD_FROM=\S+", lines[0]), (
        "the Dockerfile must start with ARG BUILD_FROM=<default>"
    )
    assert lines[1] in ("FROM ${BUILD_FROM}", "FROM $BUILD_FROM")
    # Home Assistant's multi-arch Debian base, as the official add-ons since the 2026.04 builder migration.
    assert lines[0] == "ARG BUILD_FROM=ghcr.io/home-assistant/base-debian:trixie"
    text = "\n".join(lines)
    assert f"ARG WYOMING_PERSONA_VERSION={_version()}" in text
    assert (folder / "wheels" / f"wyoming_persona-{_version()}-py3-none-any.whl").is_file(), (
        f"{slug}/wheels has no wheel of version {_version()}: run make addon-wheels"
    )
    copies = [line.split()[1:] for line in lines if line.startswith("COPY") and "/tmp/install/" in line]
    assert len(copies) == 1 and {"requirements.txt", "wheels/"} <= set(copies[0][:-1])
    commands = [c.strip(" \\") for c in re.split(r"&&|\bRUN\b", text.replace("\\\n", " "))]
    installs = [c for c in commands if re.search(r"\bpip install\b", c)]
    assert installs, f"{slug}/Dockerfile installs nothing with pip"
    own = [c for c in installs if "wyoming_persona" in c or "wyoming-persona" in c]
    assert len(own) == 1, f"{slug}: install our wheel exactly once, by path: {own}"
    assert WHEEL_PATH in own[0] and "--no-index" in own[0] and "--no-deps" in own[0], own[0]
    for command in installs:
        if command is own[0]:
            continue
        # Anything taken from an index: only pinned, hashed files from requirement files in this folder.
        assert "--require-hashes" in command and "--index-url https://pypi.org/simple" in command, command
        arguments = command.split("pip install", 1)[1].split()
        named = [a for a in arguments if not a.startswith("-") and not a.startswith("/tmp/install/")]
        values = {arguments[i + 1] for i, a in enumerate(arguments[:-1]) if a in ("-r", "--index-url")}
        assert set(named) <= values, f"{slug}: packages named on the command line: {set(named) - values}"
    assert any(re.search(r"\bpip check\b", c) for c in commands), "run pip check after installing"
    for line in lines:
        if line.startswith(("COPY", "ADD")):
            sources = line.split()[1:-1]
            for source in sources:
                assert (folder / source).exists(), f"{slug}/Dockerfile copies missing {source}"


@pytest.mark.parametrize("slug", sorted(EXPECTED))
def test_add_on_files(slug: str) -> None:
    folder = ADDONS_DIR / slug
    for name in ("DOCS.md", "README.md", "CHANGELOG.md", "translations/en.yaml", "icon.png", "logo.png"):
        assert (folder / name).is_file(), f"{slug}/{name} is missing"
    assert f"## {_version()}" in (folder / "CHANGELOG.md").read_text()
    # The sizes Home Assistant's developer docs ask for: icon 128x128, logo about 250x100.
    for name, size in (("icon.png", (128, 128)), ("logo.png", (250, 100))):
        header = (folder / name).read_bytes()[:24]
        assert header[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", header[16:24]) == size, f"{slug}/{name}"


@pytest.mark.parametrize("slug", sorted(EXPECTED))
def test_s6_layout(slug: str) -> None:
    s6 = ADDONS_DIR / slug / S6
    services = {p.name for p in s6.iterdir() if p.is_dir() and p.name != "user"}
    contents = {p.name for p in (s6 / "user/contents.d").iterdir()}
    assert contents == services, f"{slug}: user bundle {contents} vs services {services}"
    assert slug in services, f"{slug}: no s6 service named after the add-on"
    for name in services:
        kind = (s6 / name / "type").read_text().strip()
        assert kind in ("longrun", "oneshot"), f"{slug}/{name}: type {kind!r}"
        if kind == "longrun":
            assert (s6 / name / "run").is_file()
        else:
            up = (s6 / name / "up").read_text().strip()
            assert up == f"/etc/s6-overlay/s6-rc.d/{name}/run"
        for dependency in (s6 / name / "dependencies.d").iterdir():
            assert dependency.name == "base" or dependency.name in services, (
                f"{slug}/{name}: {dependency.name}"
            )
    for script in _scripts(slug):
        if script.name in ("run", "finish"):
            assert script.stat().st_mode & 0o111, f"{script.relative_to(REPO)} is not executable"
            assert script.read_text().startswith("#!/command/with-contenv bashio\n")


@pytest.mark.parametrize("slug", sorted(EXPECTED))
def test_referenced_files_exist(slug: str) -> None:
    root = ADDONS_DIR / slug / "rootfs"
    dockerfile = (ADDONS_DIR / slug / "Dockerfile").read_text()  # files the image build makes count too
    for script in [*_scripts(slug), *root.rglob("up")]:
        for path in ABS_PATH.findall(_code(script)):
            exists = (root / path.lstrip("/")).exists() or path in dockerfile
            assert exists, f"{script.relative_to(REPO)} names missing {path}"


@pytest.mark.parametrize("slug", sorted(EXPECTED))
def test_run_script_flags_exist_in_cli(slug: str) -> None:
    checked = 0
    for script in _scripts(slug):
        code = _code(script)
        subs = set(re.findall(r"wyoming-persona\s+([a-z]+)", code))
        if not subs:
            continue
        assert len(subs) == 1, f"{script.relative_to(REPO)} runs several subcommands: {subs}"
        (sub,) = subs
        unknown = set(FLAG.findall(code)) - _cli_flags(sub)
        assert not unknown, f"{script.relative_to(REPO)}: `wyoming-persona {sub}` has no {sorted(unknown)}"
        checked += 1
    assert checked, f"{slug}: no run script starts wyoming-persona"


@pytest.mark.parametrize("slug", sorted(SHARED_FOLDERS))
def test_bundled_personas_match_config(slug: str) -> None:
    """Docker builds from the add-on folder, so it carries copies; they must not drift."""
    root = ADDONS_DIR / slug / "rootfs"
    bundled = root / "usr/share/wyoming-persona/personas"
    shipped = REPO / "config/personas"
    compare = filecmp.dircmp(bundled, shipped)
    assert not (compare.left_only or compare.right_only or compare.diff_files), (
        f"{bundled.relative_to(REPO)} differs from config/personas: copy it again "
        f"(rm -r {bundled.relative_to(REPO)} && cp -r config/personas {bundled.relative_to(REPO)})"
    )
    assert set(load_folder(bundled)) == set(load_folder(shipped))
    helper = "usr/lib/wyoming-persona/personas.sh"
    first = ADDONS_DIR / sorted(SHARED_FOLDERS)[0] / "rootfs" / helper
    assert (root / helper).read_text() == first.read_text()
    run = (ADDONS_DIR / slug / S6 / "init-personas/run").read_text()
    assert "personas::prepare" in run
    assert "wyoming-persona personas check" in (root / helper).read_text()


def test_no_install_command_for_the_unpublished_name() -> None:
    """`wyoming-persona` is not on PyPI: a `pip install wyoming-persona` would install someone else's
    package once the name is taken. The docs install from a checkout or a release's wheel."""
    docs = [REPO / "README.md", *ADDONS_DIR.glob("*/DOCS.md"), *ADDONS_DIR.glob("*/README.md")]
    for doc in docs:
        found = re.findall(r"pip3? install[^\n`]*?[\"' ]wyoming-persona\b", doc.read_text())
        assert not found, f"{doc.relative_to(REPO)}: {found}"
