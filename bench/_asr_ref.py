"""The reference server for bench/asr.py, installed from PyPI into its own venv (pip resolves its deps)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REF_VERSION = "wyoming-faster-whisper==3.8.1"


def ensure_reference_venv(venv: Path) -> Path:
    """The venv's python, creating the venv and installing the reference server on first use."""
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.is_file() and marker.read_text().strip() == REF_VERSION:
        return python
    if not python.is_file():
        print(f"creating {venv}", flush=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    print(f"installing {REF_VERSION} into {venv} (once)", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", REF_VERSION], check=True)
    marker.write_text(REF_VERSION + "\n")
    return python
