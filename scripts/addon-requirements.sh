#!/usr/bin/env bash
# Writes each add-on's hash-pinned third-party requirements (addons/<slug>/requirements.txt) and the VAD
# add-on's model file source (addons/vad/models.txt), from constraints.txt.
#
# For each add-on: pip resolves the add-on's extras of a wheel built from the current source against
# constraints.txt on Python 3.13, the images' Python (Debian trixie's python3; a dry run in a scratch
# venv: nothing is installed), and every resolved package except our own gets `==version` plus the
# sha256 of each of its PyPI files that fits a CPython 3.13 Linux amd64/aarch64 image (or is pure Python
# / an sdist). The Dockerfiles install these with `--require-hashes`, so a file that changes on PyPI, or
# a package that is not pinned here, stops the build. Needs PyPI and a python3.13 ($PYTHON313); run it
# after changing constraints.txt or an extra (then `make addon-wheels` if pyproject.toml changed).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
PYTHON313="${PYTHON313:-$(command -v python3.13 || true)}"
# The extras each add-on installs: its service and only the model packages its image carries (the ASR
# and persona add-ons download theirs on first start; the VAD add-on takes one file, see models.txt).
declare -A EXTRAS=(
    [asr]="asr"
    [tts]="tts,models-tts"
    [vad]="vad"
    [persona]="llm,llamacpp,mqtt,home"
)

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

if ! "$PYTHON313" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2> /dev/null; then
    echo "addon-requirements: needs a python3.13 (set PYTHON313)" >&2
    exit 1
fi
"$PYTHON313" -m venv "$scratch/py313"
wheel="$(PYTHON="$PYTHON" bash scripts/addon-wheels.sh --out "$scratch/wheel" | tail -n 1)"
for slug in "${!EXTRAS[@]}"; do
    echo "addon-requirements: resolving $slug [${EXTRAS[$slug]}] on $("$scratch/py313/bin/python" -V) ..."
    "$scratch/py313/bin/python" -m pip install --quiet --disable-pip-version-check --dry-run \
        --ignore-installed --report "$scratch/$slug.json" -c constraints.txt \
        "wyoming-persona[${EXTRAS[$slug]}] @ file://$wheel"
done

"$PYTHON" - "$scratch" "${!EXTRAS[@]}" <<'EOF'
"""Turn pip's resolution reports into hash-pinned requirement files."""

import json
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

scratch, slugs = Path(sys.argv[1]), sys.argv[2:]
OWN = "wyoming-persona"
WHEEL = re.compile(r"-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$")
PYTHONS = ("py3", "cp313", "py313")
_hashes: dict[tuple[str, str, bool], list[str]] = {}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def fits(filename: str) -> bool:
    """An sdist, or a wheel a CPython 3.13 glibc image on amd64 or aarch64 can install."""
    if filename.endswith((".tar.gz", ".zip")):
        return True
    match = WHEEL.search(filename)
    if match is None:
        return False
    pythons = match["py"].split(".")
    platforms = match["plat"].split(".")
    python_ok = any(p in PYTHONS or p == "py2.py3" for p in pythons) or "abi3" in match["abi"]
    platform_ok = "any" in platforms or any(
        p.startswith(("manylinux", "linux")) and p.endswith(("x86_64", "aarch64")) for p in platforms
    )
    return python_ok and platform_ok


def file_version(filename: str) -> str:
    if filename.endswith(".whl"):
        return filename.split("-")[1]
    stem = filename.removesuffix(".tar.gz").removesuffix(".zip")
    return stem.rsplit("-", 1)[-1]


def hashes(name: str, version: str, wheels_only: bool = False) -> list[str]:
    """sha256 of the fitting files of one release, from PyPI's JSON simple index (PEP 691)."""
    key = (canonical(name), version, wheels_only)
    if key not in _hashes:
        url = f"https://pypi.org/simple/{key[0]}/"
        request = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                files = json.load(response)["files"]
        except urllib.error.HTTPError as err:
            raise SystemExit(f"{name}=={version}: {url}: {err}") from err
        found = sorted(
            {
                f["hashes"]["sha256"]
                for f in files
                if file_version(f["filename"]) == version
                and fits(f["filename"])
                and not f.get("yanked")
                and (f["filename"].endswith(".whl") or not wheels_only)
            }
        )
        if not found:
            raise SystemExit(f"no installable file of {name}=={version} on PyPI")
        _hashes[key] = found
    return _hashes[key]


def pinned(name: str, version: str) -> str:
    lines = [f"{canonical(name)}=={version}"]
    lines += [f"    --hash=sha256:{h}" for h in hashes(name, version)]
    return " \\\n".join(lines)


for slug in sorted(slugs):
    report = json.loads((scratch / f"{slug}.json").read_text())
    resolved = sorted(
        (canonical(item["metadata"]["name"]), item["metadata"]["version"]) for item in report["install"]
    )
    extras = next(
        req for req in report["install"] if canonical(req["metadata"]["name"]) == OWN
    )["requested_extras"]
    body = [pinned(name, version) for name, version in resolved if name != OWN]
    header = (
        f"# Third-party packages of the {slug} add-on: wyoming-persona[{','.join(sorted(extras))}] resolved\n"
        "# against constraints.txt, with the sha256 of every PyPI file an amd64/aarch64 image can use.\n"
        "# Generated by scripts/addon-requirements.sh; do not edit. Our own package is not here: it is\n"
        "# the wheel in wheels/, installed by path.\n"
    )
    Path(f"addons/{slug}/requirements.txt").write_text(header + "\n".join(body) + "\n")
    print(f"addon-requirements: addons/{slug}/requirements.txt ({len(body)} packages)")

# The VAD add-on's Silero model: the file faster-whisper ships, taken from its wheel. Only wheel hashes
# are pinned, so pip cannot fall back to the sdist.
version = next(
    line.split("==", 1)[1].strip()
    for line in Path("constraints.txt").read_text().splitlines()
    if line.startswith("faster-whisper==")
)
header = (
    "# The VAD add-on's Silero model: silero_vad_v6.onnx from faster-whisper's wheel, which the Dockerfile\n"
    "# downloads (--no-deps) and takes that one file from; faster-whisper is not installed. It is the\n"
    "# file the ASR add-on trims with. Generated by scripts/addon-requirements.sh; do not edit.\n"
)
lines = [f"faster-whisper=={version}"]
lines += [f"    --hash=sha256:{h}" for h in hashes("faster-whisper", version, wheels_only=True)]
Path("addons/vad/models.txt").write_text(header + " \\\n".join(lines) + "\n")
print("addon-requirements: addons/vad/models.txt")
EOF
