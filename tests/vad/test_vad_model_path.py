"""Where the Silero model comes from: faster-whisper's file, found without importing faster-whisper (the
VAD add-on has only the file, passed with --vad-model), and one clear line when there is none."""

from __future__ import annotations

import importlib.resources
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from wyoming_persona.vad import silero
from wyoming_persona.vad.silero import SileroModel, SileroModelError, default_model_path

REPO = Path(__file__).resolve().parents[2]


def test_the_default_is_faster_whispers_file_found_without_importing_it() -> None:
    code = (
        "import sys\n"
        "from wyoming_persona.vad.silero import default_model_path\n"
        "path = default_model_path()\n"
        "assert not {'faster_whisper', 'ctranslate2', 'av'} & set(sys.modules)\n"
        "print(path)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    shipped = importlib.resources.files("faster_whisper") / "assets" / "silero_vad_v6.onnx"
    assert Path(result.stdout.strip()) == Path(str(shipped)) == default_model_path()


def test_a_model_passed_by_path_is_used(tmp_path: Path) -> None:
    copy = tmp_path / "silero.onnx"
    copy.write_bytes(default_model_path().read_bytes())
    assert SileroModel(copy).path == copy


def test_without_faster_whisper_the_error_names_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        silero.importlib.util, "find_spec", lambda name: None if name == "faster_whisper" else real(name)
    )
    with pytest.raises(SileroModelError, match=r"faster-whisper.*is not installed.*--vad-model"):
        default_model_path()


def test_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wyoming_persona",
            "vad",
            "--uri",
            "tcp://127.0.0.1:0",
            "--vad-model",
            str(tmp_path / "no.onnx"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].endswith(f"Silero VAD model not found: {tmp_path / 'no.onnx'}")
