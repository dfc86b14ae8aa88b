"""faster-whisper behind one worker thread: the model is shared by every connection, calls run in order.

Short window: Whisper's encoder normally sees a 30 s window however short the command, and that encode
is most of the cost. CTranslate2 accepts a shorter window, so speech up to ~28 s is encoded in a window
of its length plus 2 s, at least `min_window_s` (10 s). Much shorter windows make Whisper repeat itself;
10 s measured the same word error rate as 30 s on spoken commands at a fraction of the time. A result
that still looks degenerate (a repeated sentence, a run to the length limit, high compression ratio)
is decoded again the standard way. No language given (auto-detect) or long audio: the standard way.

A job can be cancelled: a queued job is skipped, a running one stops between encode and decode (or at
the next segment boundary on the standard path); CTranslate2 cannot be interrupted inside a call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_LOGGER = logging.getLogger(__name__)
_SAMPLES_PER_FRAME = 160
_FULL_WINDOW_FRAMES = 3000
_TAIL_FRAMES = 200
_MAX_TOKENS = 224
_MAX_COMPRESSION_RATIO = 2.4


@dataclass(frozen=True, slots=True)
class WhisperSettings:
    model_path: Path
    model_name: str
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 2
    beam_size: int = 5
    min_window_s: float | None = 10.0  # None: always the standard 30 s window


class Cancelled(Exception):
    """The job was cancelled before it produced a result."""


@dataclass(frozen=True, slots=True)
class TranscriptResult:
    segments: tuple[str, ...]
    language: str | None
    seconds: float

    @property
    def text(self) -> str:
        return " ".join(segment.strip() for segment in self.segments if segment.strip())


class WhisperTranscriber:
    """Owns the WhisperModel and its single-thread executor."""

    def __init__(self, settings: WhisperSettings) -> None:
        from faster_whisper import WhisperModel

        self.settings = settings
        started = time.monotonic()
        self.model = WhisperModel(
            str(settings.model_path),
            device=settings.device,
            compute_type=settings.compute_type,
            cpu_threads=settings.cpu_threads,
            local_files_only=True,
        )
        self.multilingual = bool(self.model.model.is_multilingual)
        self.load_seconds = time.monotonic() - started
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper")

    def languages(self) -> list[str]:
        if not self.multilingual:
            return ["en"]
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        return sorted(_LANGUAGE_CODES)

    async def transcribe(
        self, audio: np.ndarray, language: str | None, cancel: threading.Event
    ) -> TranscriptResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.transcribe_blocking, audio, language, cancel)

    def transcribe_blocking(
        self, audio: np.ndarray, language: str | None, cancel: threading.Event | None = None
    ) -> TranscriptResult:
        if cancel is not None and cancel.is_set():
            raise Cancelled
        if not self.multilingual:
            language = "en"
        started = time.monotonic()
        frames = len(audio) // _SAMPLES_PER_FRAME + 1
        window = self._window(frames)
        if language is not None and window is not None:
            text = self._short_window(audio, language, window, cancel)
            if text is not None:
                return TranscriptResult((text,), language, time.monotonic() - started)
        segments, info = self.model.transcribe(
            audio,
            language=language,
            beam_size=self.settings.beam_size,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        texts = []
        for segment in segments:
            texts.append(segment.text)
            if cancel is not None and cancel.is_set():
                raise Cancelled
        return TranscriptResult(tuple(texts), info.language, time.monotonic() - started)

    def _window(self, frames: int) -> int | None:
        """Encoder window (mel frames) for audio of `frames` frames, None for the standard path."""
        if self.settings.min_window_s is None or frames + _TAIL_FRAMES > _FULL_WINDOW_FRAMES:
            return None
        minimum = int(self.settings.min_window_s * 100)
        return min(_FULL_WINDOW_FRAMES, max(minimum, -(-(frames + _TAIL_FRAMES) // 100) * 100))

    def _short_window(
        self, audio: np.ndarray, language: str, window: int, cancel: threading.Event | None
    ) -> str | None:
        """Greedy/beam decode of one window without timestamps; None if the result looks degenerate."""
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        features = self.model.feature_extractor(audio)
        padded = np.zeros((features.shape[0], window), dtype=np.float32)
        used = min(window, features.shape[1])
        padded[:, :used] = features[:, :used]
        encoded = self.model.model.encode(ctranslate2.StorageView.from_array(padded[None]), to_cpu=False)
        if cancel is not None and cancel.is_set():
            raise Cancelled
        tokenizer = Tokenizer(
            self.model.hf_tokenizer, self.multilingual, task="transcribe", language=language
        )
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        result = self.model.model.generate(
            encoded,
            [prompt],
            beam_size=self.settings.beam_size,
            max_length=_MAX_TOKENS,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        )[0]
        tokens = [token for token in result.sequences_ids[0] if token < tokenizer.eot]
        text = tokenizer.decode(tokens).strip()
        if _degenerate(text, len(tokens) + len(prompt) >= _MAX_TOKENS - 1):
            _LOGGER.debug("Short-window decode looks degenerate; decoding with the 30 s window")
            return None
        return text

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _degenerate(text: str, hit_limit: bool) -> bool:
    if hit_limit:
        return True
    data = text.encode()
    if len(data) > 40 and len(data) / len(zlib.compress(data)) > _MAX_COMPRESSION_RATIO:
        return True
    sentences = [s.strip().lower() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.strip()) > 8]
    if any(a == b for a, b in itertools.pairwise(sentences)):
        return True
    words = re.sub(r"[^\w' ]+", " ", text.lower()).split()
    return any(
        len(words) % period == 0 and words == words[:period] * (len(words) // period)
        for period in range(3, len(words) // 2 + 1)
    )
