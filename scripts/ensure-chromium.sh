#!/usr/bin/env sh
# Make sure Debian's Chromium exists at /usr/bin/chromium: the persona studio's browser tests
# (tests/studio) drive it with Playwright (its own browser download is not reachable from CI).
# Installs the Debian package when missing; needs root (or sudo) on Debian/Ubuntu.
set -eu

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "chromium is missing and I am not root: install the 'chromium' package" >&2
    exit 1
fi

echo "Installing chromium (Debian package, for the studio's browser tests)..." >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
[ -x /usr/bin/chromium ]
