"""Silero VAD v6 (the ONNX file faster-whisper ships) run with onnxruntime, one stream at a time.

The model takes `input[N, 576]`: N consecutive 512-sample windows of 16 kHz audio, each prefixed with the
last 64 samples of the window before it, and carries an LSTM state (`h`, `c`) across calls. The session
is loaded once and shared (onnxruntime sessions are safe to run from several threads); each stream gets
its own cheap `SileroDetector` holding the state, the context and any partial window.

The file is found in the installed faster-whisper package without importing it (that import loads
CTranslate2 and PyAV); the VAD add-on has no faster-whisper and passes the same file's path instead.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..onnx_session import cpu_session

WINDOW_SAMPLES = 512
CONTEXT_SAMPLES = 64
WINDOW_MS = WINDOW_SAMPLES * 1000 / 16000
_STATE_SHAPE = (1, 1, 128)
MODEL_FILE = "silero_vad_v6.onnx"


class SileroModelError(FileNotFoundError):
    """No Silero model file; the message says where it was looked for and how to get it."""


def default_model_path() -> Path:
    """The Silero model inside the installed faster-whisper package (found, not imported)."""
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise SileroModelError(
            "no Silero VAD model: faster-whisper, which ships it, is not installed "
            "(pip install 'wyoming-persona[models-vad]') and no --vad-model was given"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / MODEL_FILE


class SileroModel:
    """The shared onnxruntime session."""

    def __init__(self, path: Path | None = None, threads: int = 1) -> None:
        self.path = path or default_model_path()
        if not self.path.is_file():
            raise SileroModelError(f"Silero VAD model not found: {self.path}")
        self.session = cpu_session(self.path, threads)

    def detector(self) -> SileroDetector:
        return SileroDetector(self)

    def run(
        self, windows: np.ndarray, h: np.ndarray, c: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        probs, h, c = self.session.run(None, {"input": windows, "h": h, "c": c})
        return np.asarray(probs, dtype=np.float32).reshape(-1), h, c


class SileroDetector:
    """Speech probability per 32 ms window of one 16 kHz mono stream."""

    def __init__(self, model: SileroModel) -> None:
        self.model = model
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Probabilities for every complete window; a trailing partial window waits for more audio."""
        audio = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        count = len(audio) // WINDOW_SAMPLES
        self._pending = audio[count * WINDOW_SAMPLES :]
        if count == 0:
            return np.zeros(0, dtype=np.float32)
        windows = audio[: count * WINDOW_SAMPLES].reshape(count, WINDOW_SAMPLES)
        contexts = np.empty((count, CONTEXT_SAMPLES), dtype=np.float32)
        contexts[0] = self._context
        contexts[1:] = windows[:-1, -CONTEXT_SAMPLES:]
        self._context = windows[-1, -CONTEXT_SAMPLES:].copy()
        probs, self._h, self._c = self.model.run(
            np.concatenate([contexts, windows], axis=1), self._h, self._c
        )
        return probs

    def flush(self) -> np.ndarray:
        """The probability of the trailing partial window (zero padded), if any."""
        if not len(self._pending):
            return np.zeros(0, dtype=np.float32)
        padding = np.zeros(WINDOW_SAMPLES - len(self._pending), dtype=np.float32)
        return self.process(padding)
