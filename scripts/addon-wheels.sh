#!/usr/bin/env bash
# Builds the wyoming-persona wheel from the current source and keeps a copy in each add-on folder
# (addons/<slug>/wheels/), the only way the add-on images get our code: Home Assistant builds an
# add-on from its own folder, and the name is not taken from any package index.
#
#   scripts/addon-wheels.sh             build, then replace addons/*/wheels/*.whl
#   scripts/addon-wheels.sh --out DIR   only build, into DIR (tests/addons compares it with the copies)
#
# The build backend is pinned below (a different setuptools writes different metadata), and only the
# files that go into the wheel are copied to a scratch folder, so the tree's build/ and egg-info stay
# out of it. Run it after any change under wyoming_persona/ or to pyproject.toml (`make addon-wheels`).
set -euo pipefail
cd "$(dirname "$0")/.."

SETUPTOOLS_PIN="setuptools==80.9.0"
WHEEL_PIN="wheel==0.45.1"
PYTHON="${PYTHON:-.venv/bin/python}"

out=""
if [ "${1:-}" = "--out" ]; then
    out="${2:?--out needs a folder}"
elif [ $# -gt 0 ]; then
    echo "usage: $0 [--out DIR]" >&2
    exit 2
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/src" "$scratch/dist"
cp pyproject.toml README.md "$scratch/src/"
tar -c --exclude=__pycache__ --exclude='*.pyc' wyoming_persona | tar -x -C "$scratch/src"
printf '%s\n%s\n' "$SETUPTOOLS_PIN" "$WHEEL_PIN" > "$scratch/build-constraints.txt"

# Zip timestamps from a fixed date: the wheel's bytes then depend on its contents only.
SOURCE_DATE_EPOCH=315532800 PIP_CONSTRAINT="$scratch/build-constraints.txt" \
    "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps \
    --wheel-dir "$scratch/dist" "$scratch/src"

wheels=("$scratch"/dist/wyoming_persona-*-py3-none-any.whl)
if [ ${#wheels[@]} -ne 1 ] || [ ! -f "${wheels[0]}" ]; then
    echo "addon-wheels: expected one pure-Python wheel, got: ${wheels[*]}" >&2
    exit 1
fi

if [ -n "$out" ]; then
    mkdir -p "$out"
    cp "${wheels[0]}" "$out/"
    echo "$out/$(basename "${wheels[0]}")"
    exit 0
fi

for config in addons/*/config.yaml; do
    folder="$(dirname "$config")/wheels"
    mkdir -p "$folder"
    rm -f "$folder"/wyoming_persona-*.whl
    cp "${wheels[0]}" "$folder/"
    echo "addon-wheels: $folder/$(basename "${wheels[0]}")"
done
