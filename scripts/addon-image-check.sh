#!/usr/bin/env bash
# Proves the add-on images: builds each one from its own folder (the folder is the whole build context,
# as in Home Assistant) with buildah on a Debian bookworm base made here with debootstrap (HA's base
# images cannot be pulled here; it is passed as BUILD_FROM), records the image size, then starts the
# service inside the image and asks it `describe`, from outside and with the image's own HEALTHCHECK
# command from inside. Slow (the persona image compiles llama.cpp and joins 1.6 GB of models): not part
# of `make test`.
#
#   scripts/addon-image-check.sh [SLUG...]     default: vad asr tts persona
#
# Outputs (logs, the base rootfs, results.tsv) go to $ADDON_CHECK_DIR (default /tmp/addon-image-check);
# images are tagged localhost/wyoming-persona-<slug>:check. Needs root, debootstrap, buildah, podman.
#
# HA's base image brings s6-overlay and bashio, which the plain debootstrap base lacks, so the service's
# command is run directly (the flags its s6 run script would pass, on port + 10000 so that a suite
# already running on this machine does not collide). Containers run with `podman run` when the kernel
# allows it; where it does not (a gVisor sandbox refuses crun's setrlimit), with
# `buildah run --isolation chroot` on the same image, which shares the host's network.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK="${ADDON_CHECK_DIR:-/tmp/addon-image-check}"
BASE="localhost/bookworm-base:latest"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DESCRIBE_WAIT="${DESCRIBE_WAIT:-600}"
HOST_PY="${PYTHON:-.venv/bin/python}"
mkdir -p "$WORK"
slugs=("$@")
[ ${#slugs[@]} -gt 0 ] || slugs=(vad asr tts persona)

log() { echo "addon-image-check: $*" >&2; }

# The command each service runs in its add-on (see addons/<slug>/rootfs/.../run), minus bashio.
service_command() {
    local personas=(--personas-dir /usr/share/wyoming-persona/personas --state-dir /tmp/state)
    case "$1" in
        vad) echo wyoming-persona vad --uri tcp://0.0.0.0:20350 ;;
        asr) echo wyoming-persona asr --uri tcp://0.0.0.0:20300 --model tiny.en --language en \
            --cache-dir /tmp/whisper ;;
        tts) echo wyoming-persona tts --uri tcp://0.0.0.0:20200 "${personas[@]}" ;;
        persona) echo wyoming-persona persona --uri tcp://0.0.0.0:20500 "${personas[@]}" \
            --backend embedded --model qwen-1.5b ;;
        *) log "unknown add-on $1"; return 1 ;;
    esac
}
port_of() { case "$1" in vad) echo 20350 ;; asr) echo 20300 ;; tts) echo 20200 ;; persona) echo 20500 ;; esac; }

make_base() {
    if podman image exists "$BASE"; then
        return
    fi
    log "making $BASE with debootstrap (bookworm, minbase) ..."
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase --include=ca-certificates bookworm "$WORK/rootfs" "$MIRROR" \
        > "$WORK/debootstrap.log" 2>&1
    # This machine reaches PyPI through a TLS-inspecting proxy: trust its CA inside the test base
    # too (an HA base image on a user's machine needs nothing like it).
    if compgen -G "/usr/local/share/ca-certificates/*.crt" > /dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$WORK/rootfs/usr/local/share/ca-certificates/"
        chroot "$WORK/rootfs" update-ca-certificates > /dev/null
    fi
    chroot "$WORK/rootfs" apt-get clean
    rm -rf "$WORK/rootfs/var/lib/apt/lists/"*
    tar -C "$WORK/rootfs" -c . | podman import - "$BASE" > /dev/null
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

check_one() {
    local slug="$1" image="localhost/wyoming-persona-$1:check" port
    port="$(port_of "$slug")"
    log "$slug: building from addons/$slug/ (log: $WORK/$slug-build.log) ..."
    local start=$SECONDS
    buildah build --isolation chroot --layers --format docker --build-arg "BUILD_FROM=$BASE" \
        -t "$image" addons/"$slug" > "$WORK/$slug-build.log" 2>&1
    local build_s=$((SECONDS - start))
    local size
    size="$(podman image inspect --format '{{.Size}}' "$image")"
    log "$slug: built in ${build_s} s, $((size / 1000000)) MB"

    local -a cmd
    read -r -a cmd <<< "$(service_command "$slug")"
    local runner pid ctr=""
    if podman run --rm "$image" true > /dev/null 2>&1; then
        runner="podman run"
        setsid podman run --rm --network host --name "wp-check-$slug" "$image" "${cmd[@]}" \
            > "$WORK/$slug-run.log" 2>&1 &
        pid=$!
    else
        runner="buildah run --isolation chroot"
        ctr="$(buildah from "$image")"
        setsid buildah run --isolation chroot "$ctr" -- "${cmd[@]}" > "$WORK/$slug-run.log" 2>&1 &
        pid=$!
    fi
    log "$slug: started with $runner (log: $WORK/$slug-run.log); waiting for describe on port $port ..."
    local offers="" healthy="no" waited=0
    while [ $waited -lt "$DESCRIBE_WAIT" ] && kill -0 "$pid" 2> /dev/null; do
        if offers="$(describe_from_host "tcp://127.0.0.1:$port" 2> /dev/null)"; then
            break
        fi
        offers=""
        sleep 2
        waited=$((waited + 2))
    done
    if [ -n "$offers" ]; then
        local probe=(/usr/src/.venv/bin/python3 -m wyoming_persona.healthcheck "tcp://127.0.0.1:$port")
        if [ -n "$ctr" ]; then
            buildah run --isolation chroot "$ctr" -- "${probe[@]}" && healthy="yes"
        else
            podman exec "wp-check-$slug" "${probe[@]}" && healthy="yes"
        fi
    fi
    kill -TERM -- "-$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
    [ -z "$ctr" ] || buildah rm "$ctr" > /dev/null
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$slug" "$((size / 1000000))" "$build_s" "${offers:-none}" \
        "$healthy" "$runner" >> "$WORK/results.tsv"
    if [ -z "$offers" ] || [ "$healthy" != yes ]; then
        log "$slug: FAILED (describe: ${offers:-no answer}, healthcheck: $healthy); see $WORK/$slug-run.log"
        return 1
    fi
    log "$slug: describe answered ($offers), HEALTHCHECK command exit 0"
}

make_base
[ -f "$WORK/results.tsv" ] || printf 'slug\tMB\tbuild_s\tdescribe\thealthcheck\trunner\n' > "$WORK/results.tsv"
failed=0
for slug in "${slugs[@]}"; do
    check_one "$slug" || failed=1
done
column -t -s $'\t' "$WORK/results.tsv" >&2
exit $failed
