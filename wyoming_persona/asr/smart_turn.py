"""Smart Turn v3: has the speaker finished their turn, judged from the sound of the last 8 seconds.

The ONNX model (BSD-2, by Daily) ships in the `pipecat-ai` wheel; we only read the file (found through
the wheel's installed file list, pipecat is never imported) and compute its input ourselves. Input, as
pipecat's `local_smart_turn_v3.py` builds it: the last 8 s of 16 kHz audio (zeros in front when shorter),
normalised to zero mean and unit variance, then Whisper's 80-bin log-mel spectrogram (400-sample FFT,
hop 160) -> `input_features[1, 80, 800]`. Output: `logits[1, 1]`, already a sigmoid, the probability
that the turn is complete. faster-whisper's feature extractor matches pipecat's numpy copy of the
Transformers extractor to within 4e-6.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np

from ..onnx_session import cpu_session

PACKAGE = "pipecat-ai"
PACKAGE_VERSION = "1.14.0"
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
RATE = 16000
WINDOW_SAMPLES = 8 * RATE
_NORM_EPS = 1e-7


class SmartTurnNotFoundError(FileNotFoundError):
    """The model file is not installed."""


def default_model_path() -> Path:
    """The ONNX file inside the installed `pipecat-ai` wheel."""
    hint = f"install it with: pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}"
    try:
        files = importlib.metadata.files(PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise SmartTurnNotFoundError(
            f"the Smart Turn v3 model comes with the {PACKAGE} package, which is not installed; {hint}"
        ) from None
    for file in files:
        if file.name == MODEL_FILE:
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    raise SmartTurnNotFoundError(f"{MODEL_FILE} not found in the installed {PACKAGE} package; {hint}")


class SmartTurnModel:
    """The shared onnxruntime session (safe to run from several threads; each call blocks)."""

    def __init__(self, path: Path | None = None, threads: int = 1) -> None:
        from faster_whisper.feature_extractor import FeatureExtractor

        self.path = path or default_model_path()
        if not self.path.is_file():
            raise SmartTurnNotFoundError(f"Smart Turn model not found: {self.path}")
        self.session = cpu_session(self.path, threads)
        self._features = FeatureExtractor(feature_size=80, sampling_rate=RATE, hop_length=160, n_fft=400)

    def features(self, audio: np.ndarray) -> np.ndarray:
        """`input_features[1, 80, 800]` for the last 8 s of `audio` (float32, 16 kHz mono)."""
        if audio.ndim != 1:
            raise ValueError(f"Smart Turn needs mono audio (1-D), got shape {audio.shape}")
        window = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
        tail = audio[-WINDOW_SAMPLES:]
        if len(tail):
            window[-len(tail) :] = tail
        window = (window - window.mean()) / np.sqrt(window.var() + _NORM_EPS)
        return self._features(window, padding=0)[np.newaxis].astype(np.float32, copy=False)

    def run_options(self):
        """Options for one `probability` call; setting `.terminate = True` stops that run within ms."""
        import onnxruntime

        return onnxruntime.RunOptions()

    def warm_up(self) -> None:
        """One run on silence: onnxruntime's first run is about twice as slow as the rest."""
        self.probability(np.zeros(RATE, dtype=np.float32))

    def probability(self, audio: np.ndarray, options=None) -> float:
        """Probability (0..1) that the turn ending with `audio` is complete (raises if terminated)."""
        (logits,) = self.session.run(None, {"input_features": self.features(audio)}, options)
        return float(np.asarray(logits).reshape(-1)[0])
