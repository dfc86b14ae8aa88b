#!/usr/bin/env bash
# Proves the add-on images: builds each one from its own folder (the folder is the whole build context,
# as for Home Assistant's builder) with buildah, records its size, starts the service inside it and asks
# it `describe`, from outside and with the image's own HEALTHCHECK command from inside. Slow (the persona
# image compiles llama.cpp with all its CPU variants): not part of `make test`.
#
#   scripts/addon-image-check.sh [SLUG...]     default: vad asr tts persona
#
# The base: each Dockerfile names Home Assistant's multi-arch `ghcr.io/home-assistant/base-debian:trixie`,
# which cannot be pulled where this runs (no container registry is reachable). BUILD_FROM is set instead
# to a Debian trixie base made here with debootstrap (minbase, the same Debian release and python3.13 the
# official base brings), so every RUN line is the production one. HA's base adds s6-overlay and bashio,
# which this one lacks, so the service's command is run directly (the flags its s6 run script passes,
# on port + 10000 so that a suite already running here does not collide), with a fresh /data.
#
# The persona image starts twice with the same /data: the first start must download, check and join
# the model (progress lines in the log), the second must download nothing. The image must hold no model
# weights (no GGUF file). Each image's size is checked against its budget.
#
# ADDON_CHECK_WHEEL=source builds the add-on folders with a wheel made from the current source instead of
# the committed wheels/ copy (for a change not yet released into the folders; the folder is copied).
# Outputs (logs, the base rootfs, results.tsv) go to $ADDON_CHECK_DIR (default /tmp/addon-image-check);
# images are tagged localhost/wyoming-persona-<slug>:check. Needs root, debootstrap, buildah, podman.
# Containers run with `podman run` where the kernel allows it; where it does not (a gVisor sandbox refuses
# crun's setrlimit), with `buildah run --isolation chroot` on the same image, sharing the host's network.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK="${ADDON_CHECK_DIR:-/tmp/addon-image-check}"
BASE="localhost/trixie-base:latest"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DESCRIBE_WAIT="${DESCRIBE_WAIT:-1800}"
HOST_PY="${PYTHON:-.venv/bin/python}"
WHEEL_FROM="${ADDON_CHECK_WHEEL:-folder}"
mkdir -p "$WORK"
slugs=("$@")
[ ${#slugs[@]} -gt 0 ] || slugs=(vad asr tts persona)

log() { echo "addon-image-check: $*" >&2; }

# The command each service runs in its add-on (see addons/<slug>/rootfs/.../run), minus bashio.
service_command() {
    local personas=(--personas-dir /usr/share/wyoming-persona/personas --state-dir /tmp/state)
    case "$1" in
        vad) echo wyoming-persona vad --uri tcp://0.0.0.0:20350 \
            --vad-model /usr/share/wyoming-persona/silero_vad_v6.onnx ;;
        asr) echo wyoming-persona asr --uri tcp://0.0.0.0:20300 --model tiny.en --language en \
            --cache-dir /data/models --download-models ;;
        tts) echo wyoming-persona tts --uri tcp://0.0.0.0:20200 "${personas[@]}" ;;
        persona) echo wyoming-persona persona --uri tcp://0.0.0.0:20500 "${personas[@]}" \
            --backend embedded --model qwen-1.5b --model-cache-dir /data/models --download-models \
            --prompt-cache-dir /data/prompts --ollama-api-port 0 ;;
        *) log "unknown add-on $1"; return 1 ;;
    esac
}
port_of() { case "$1" in vad) echo 20350 ;; asr) echo 20300 ;; tts) echo 20200 ;; persona) echo 20500 ;; esac; }
# Image budgets in MB (issue 21): the persona image without weights, the VAD image.
budget_of() { case "$1" in vad) echo 250 ;; persona) echo 600 ;; *) echo 0 ;; esac; }

make_base() {
    if podman image exists "$BASE"; then
        return
    fi
    log "making $BASE with debootstrap (trixie, minbase) ..."
    local root="$WORK/rootfs-trixie"
    if [ ! -x "$root/usr/bin/apt-get" ]; then
        rm -rf "$root"
        debootstrap --variant=minbase --include=ca-certificates trixie "$root" "$MIRROR" \
            > "$WORK/debootstrap.log" 2>&1
    fi
    # As close to HA's base-debian as this machine can make it: Debian's slim image rules (no docs but
    # the copyright files, no man pages, no locales; for packages installed later too) and the packages
    # HA's Dockerfile adds to debian:trixie-slim. Its s6-overlay, tempio and bashio (a few MB) are
    # downloads from GitHub, which is not reachable here.
    cat > "$root/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
    find "$root/usr/share/doc" -type f ! -name copyright -delete
    rm -rf "$root"/usr/share/{man,info,locale,groff,lintian,linda}/*
    # This machine reaches PyPI through a TLS-inspecting proxy: trust its CA inside the test base
    # too (an HA base image on a user's machine needs nothing like it).
    if compgen -G "/usr/local/share/ca-certificates/*.crt" > /dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
        chroot "$root" update-ca-certificates > /dev/null
    fi
    chroot "$root" apt-get update -qq > /dev/null
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        bash jq tzdata curl ca-certificates xz-utils > "$WORK/base-packages.log" 2>&1
    chroot "$root" apt-get clean
    rm -rf "$root/var/lib/apt/lists/"*
    tar -C "$root" -c . | podman import - "$BASE" > /dev/null
}

# The build context: the add-on folder, or a copy of it with a wheel built from the current source.
context_of() {
    local slug="$1"
    if [ "$WHEEL_FROM" != source ]; then
        echo "addons/$slug"
        return
    fi
    local copy="$WORK/context-$slug"
    rm -rf "$copy"
    cp -r "addons/$slug" "$copy"
    rm -f "$copy"/wheels/*.whl
    PYTHON="$HOST_PY" bash scripts/addon-wheels.sh --out "$copy/wheels" > /dev/null
    echo "$copy"
}

# Ask the service `describe` from the host; print the names of what it offers.
describe_from_host() {
    "$HOST_PY" - "$1" <<'EOF'
import asyncio
import sys

from wyoming_persona.healthcheck import describe

info = asyncio.run(asyncio.wait_for(describe(sys.argv[1]), 10)).to_dict()
names = [item["name"] for key in ("asr", "tts", "handle") for item in info.get(key) or []]
print(",".join(names) or "(empty info)")
EOF
}

# GGUF files (by their magic bytes) anywhere in the image's filesystem; prints them, one a line.
find_weights() {
    "$HOST_PY" - "$1" <<'EOF'
import os
import sys

for folder, _, files in os.walk(sys.argv[1]):
    for name in files:
        path = os.path.join(folder, name)
        try:
            if os.path.islink(path) or os.path.getsize(path) < 1_000_000:
                continue
            with open(path, "rb") as f:
                if f.read(4) == b"GGUF":
                    print(path)
        except OSError:
            pass
EOF
}

# Start the image's service with DATA as /data; wait for describe. Sets OFFERS, HEALTHY, RUN_S.
start_and_describe() {
    local slug="$1" image="$2" data="$3" runlog="$4"
    local port pid ctr="" runner
    port="$(port_of "$slug")"
    local -a cmd
    read -r -a cmd <<< "$(service_command "$slug")"
    local start=$SECONDS
    if podman run --rm "$image" true > /dev/null 2>&1; then
        runner="podman run"
        setsid podman run --rm --network host -v "$data:/data" --name "wp-check-$slug" "$image" "${cmd[@]}" \
            > "$runlog" 2>&1 &
        pid=$!
    else
        runner="buildah run --isolation chroot"
        ctr="$(buildah from "$image")"
        setsid buildah run --isolation chroot -v "$data:/data" "$ctr" -- "${cmd[@]}" > "$runlog" 2>&1 &
        pid=$!
    fi
    log "$slug: started with $runner (log: $runlog); waiting for describe on port $port ..."
    OFFERS="" HEALTHY="no"
    while [ $((SECONDS - start)) -lt "$DESCRIBE_WAIT" ] && kill -0 "$pid" 2> /dev/null; do
        if OFFERS="$(describe_from_host "tcp://127.0.0.1:$port" 2> /dev/null)"; then
            break
        fi
        OFFERS=""
        sleep 2
    done
    RUN_S=$((SECONDS - start))
    if [ -n "$OFFERS" ]; then
        local probe=(/usr/src/.venv/bin/python3 -m wyoming_persona.healthcheck "tcp://127.0.0.1:$port")
        if [ -n "$ctr" ]; then
            buildah run --isolation chroot "$ctr" -- "${probe[@]}" && HEALTHY="yes"
        else
            podman exec "wp-check-$slug" "${probe[@]}" && HEALTHY="yes"
        fi
    fi
    kill -TERM -- "-$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
    [ -z "$ctr" ] || buildah rm "$ctr" > /dev/null
    RUNNER="$runner"
}

check_one() {
    local slug="$1" image="localhost/wyoming-persona-$1:check" context
    context="$(context_of "$slug")"
    log "$slug: building from $context (wheel: $WHEEL_FROM; log: $WORK/$slug-build.log) ..."
    local start=$SECONDS
    buildah build --isolation chroot --layers --format docker --build-arg "BUILD_FROM=$BASE" \
        -t "$image" "$context" > "$WORK/$slug-build.log" 2>&1
    local build_s=$((SECONDS - start)) size base_size
    size="$(podman image inspect --format '{{.Size}}' "$image")"
    base_size="$(podman image inspect --format '{{.Size}}' "$BASE")"
    log "$slug: built in ${build_s} s, $((size / 1000000)) MB ($(((size - base_size) / 1000000)) MB above the base)"

    local failed=0 notes=""
    local budget
    budget="$(budget_of "$slug")"
    if [ "$budget" -gt 0 ] && [ $((size / 1000000)) -gt "$budget" ]; then
        log "$slug: FAILED: $((size / 1000000)) MB is over its budget of $budget MB"
        failed=1
    fi
    local ctr mnt weights
    ctr="$(buildah from "$image")"
    mnt="$(buildah mount "$ctr")"
    weights="$(find_weights "$mnt")"
    buildah umount "$ctr" > /dev/null
    buildah rm "$ctr" > /dev/null
    if [ "$slug" = persona ] && [ -n "$weights" ]; then
        log "$slug: FAILED: the image carries model weights: $weights"
        failed=1
    fi

    local data="$WORK/data-$slug"
    rm -rf "$data"
    mkdir -p "$data"
    start_and_describe "$slug" "$image" "$data" "$WORK/$slug-run.log"
    local first_s=$RUN_S
    if [ -z "$OFFERS" ] || [ "$HEALTHY" != yes ]; then
        log "$slug: FAILED (describe: ${OFFERS:-no answer}, healthcheck: $HEALTHY); see $WORK/$slug-run.log"
        failed=1
    fi
    notes="first answer ${first_s} s"
    if [ "$slug" = persona ] || [ "$slug" = asr ]; then
        local downloaded
        downloaded="$(grep -c 'Downloading' "$WORK/$slug-run.log" || true)"
        if ! grep -q "ready: /data/models/" "$WORK/$slug-run.log" || [ "$downloaded" -lt 2 ]; then
            log "$slug: FAILED: the first start did not download its model with progress lines"
            failed=1
        fi
        start_and_describe "$slug" "$image" "$data" "$WORK/$slug-run2.log"
        if [ -z "$OFFERS" ] || grep -q 'Downloading' "$WORK/$slug-run2.log"; then
            log "$slug: FAILED: the second start (describe: ${OFFERS:-no answer}) downloaded again or failed"
            failed=1
        fi
        notes="$notes; first start downloaded ($downloaded progress lines); second start: no download, answer ${RUN_S} s"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$slug" "$((size / 1000000))" "$(((size - base_size) / 1000000))" \
        "$build_s" "${OFFERS:-none}" "$HEALTHY" "$notes" >> "$WORK/results.tsv"
    if [ "$failed" -ne 0 ]; then
        return 1
    fi
    log "$slug: describe answered ($OFFERS), HEALTHCHECK command exit 0 ($RUNNER); $notes"
}

make_base
[ -f "$WORK/results.tsv" ] \
    || printf 'slug\tMB\tMB_above_base\tbuild_s\tdescribe\thealthcheck\tnotes\n' > "$WORK/results.tsv"
failed=0
for slug in "${slugs[@]}"; do
    check_one "$slug" || failed=1
done
column -t -s $'\t' "$WORK/results.tsv" >&2
exit $failed
