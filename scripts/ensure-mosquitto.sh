#!/usr/bin/env sh
# Make sure the `mosquitto` broker binary exists (the MQTT tests start a private broker with it).
# Installs the Debian package when missing; needs root (or sudo) on Debian/Ubuntu.
set -eu

if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "mosquitto is missing and I am not root: install the 'mosquitto' package" >&2
    exit 1
fi

echo "Installing mosquitto (Debian package)..." >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]
