#!/usr/bin/env bash
# Installs what the test suite needs from outside PyPI: the Mosquitto broker for the MQTT tests (they
# start and stop their own broker on a free loopback port) and Chromium for the studio's browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x scripts/ensure-mosquitto.sh ]; then
    bash scripts/ensure-mosquitto.sh
fi
if [ -x scripts/ensure-chromium.sh ]; then
    bash scripts/ensure-chromium.sh
fi
