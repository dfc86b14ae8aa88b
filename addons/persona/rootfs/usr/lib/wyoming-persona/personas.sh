#!/usr/bin/env bash
# shellcheck shell=bash
# ==============================================================================
# Shared personas and state for every Wyoming Persona add-on.
# The same file ships in the persona and tts add-ons; tests/addons checks that
# the copies stay identical.
# ==============================================================================
readonly PERSONAS_DIR=/share/wyoming-persona/personas
readonly STATE_DIR=/share/wyoming-persona/state
readonly BUNDLED_PERSONAS=/usr/share/wyoming-persona/personas

# Create the shared folders, seed the personas folder with the bundled personas
# the first time (never overwriting a user's file), then validate it so that
# every error shows in the add-on log as file:line:column: field: message.
personas::prepare() {
    mkdir -p "${PERSONAS_DIR}" "${STATE_DIR}"
    if ! compgen -G "${PERSONAS_DIR}/*.yaml" > /dev/null \
        && ! compgen -G "${PERSONAS_DIR}/*.yml" > /dev/null; then
        bashio::log.info "Seeding ${PERSONAS_DIR} with the bundled personas"
        cp -n "${BUNDLED_PERSONAS}"/*.yaml "${PERSONAS_DIR}/"
    fi
    if ! wyoming-persona personas check "${PERSONAS_DIR}"; then
        bashio::exit.nok "Fix the persona errors above in ${PERSONAS_DIR} and restart the add-on."
    fi
}
