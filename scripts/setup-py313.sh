#!/usr/bin/env bash
# Creates .venv313: the pins of .venv (scripts/setup.sh) on CPython 3.13, the Python of Debian trixie and
# of Home Assistant's newer base images. Idempotent, like scripts/setup.sh, which does the installing.
#
# The interpreter: $PYTHON313, else a python3.13 on PATH, else the one ../shared/ha-harness builds, else
# our own earlier build. With none of them (a fresh Debian 12 machine), it builds CPython from the source
# tarball of Debian trixie's python3.13 package, which apt fetches and checks against trixie's signed
# Sources index; nothing is added to the system's apt sources. About 10 minutes on 2 cores, once.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv313
PREFIX="${XDG_CACHE_HOME:-$HOME/.cache}/wyoming-persona/python3.13"
# The stdlib modules our dependencies and `python -m venv` need: a build without its -dev packages lacks some.
NEEDS='import sys, bz2, ctypes, ensurepip, lzma, sqlite3, ssl, zlib; sys.exit(sys.version_info[:2] != (3, 13))'

usable() {
    [ -n "$1" ] && "$1" -c "$NEEDS" >/dev/null 2>&1
}

find_python() {
    local candidate
    for candidate in "${PYTHON313:-}" "$(command -v python3.13 || true)" \
        "${HA_HARNESS_ROOT:-/tmp/ha-harness}/python3.13/bin/python3.13" "$PREFIX/bin/python3.13"; do
        if usable "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

build_python() {
    local work="$PREFIX.build"
    local apt_dir="$work/apt"
    rm -rf "$work"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$work/src"
    # A private apt configuration: trixie's source index only, in our own folders (which apt's _apt user
    # may not reach, hence downloads as ourselves).
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
        >"$apt_dir/sources.list"
    cat >"$apt_dir/apt.conf" <<EOF
Dir::Etc::SourceList "$apt_dir/sources.list";
Dir::Etc::SourceParts "$apt_dir/sources.list.d";
Dir::State::Lists "$apt_dir/lists";
Dir::Cache "$apt_dir/cache";
APT::Sandbox::User "$(id -un)";
EOF
    mkdir -p "$apt_dir/sources.list.d"
    echo "setup-py313: fetching the CPython 3.13 source of Debian trixie's python3.13 package ..."
    APT_CONFIG="$apt_dir/apt.conf" apt-get -qq update
    (cd "$work/src" && APT_CONFIG="$apt_dir/apt.conf" apt-get -qq source --download-only python3.13)

    local dev_packages=(build-essential libbz2-dev libffi-dev liblzma-dev libncurses-dev libreadline-dev
        libsqlite3-dev libssl-dev uuid-dev zlib1g-dev)
    local missing=() package
    for package in "${dev_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "setup-py313: installing build dependencies from Debian: ${missing[*]}"
        as_root apt-get -qq update
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi

    local tarball
    tarball="$(echo "$work"/src/python3.13_*.orig.tar.xz)"
    tar -xJf "$tarball" -C "$work/src"
    echo "setup-py313: building $(basename "$tarball") into $PREFIX (about 10 minutes on 2 cores; log in $work/build.log) ..."
    local start=$SECONDS
    if ! (cd "$work"/src/Python-3.13.*/ && ./configure --prefix="$PREFIX" --with-ensurepip=install &&
        make -j"$(nproc)" && make install) >"$work/build.log" 2>&1; then
        tail -n 20 "$work/build.log" >&2
        echo "setup-py313: the CPython build failed; the whole log is $work/build.log" >&2
        exit 1
    fi
    echo "setup-py313: CPython built after $((SECONDS - start)) s"
    rm -rf "$work"
}

if ! PYTHON313="$(find_python)"; then
    build_python
    PYTHON313="$(find_python)" || {
        echo "setup-py313: the build at $PREFIX lacks a module: $NEEDS" >&2
        exit 1
    }
fi

# A venv whose interpreter has gone (say, a build under /tmp that was cleared) is made again.
if [ -e "$VENV/bin/python" ] && ! "$VENV/bin/python" -c "" >/dev/null 2>&1; then
    echo "setup-py313: $VENV's interpreter is gone; making $VENV again"
    rm -rf "$VENV"
fi

PYTHON="$PYTHON313" exec bash scripts/setup.sh "$VENV"
