"""faster-whisper behind one worker thread: the model is shared by every connection, calls run in order.

A job can be cancelled: a queued job is skipped, a running one stops at the next segment boundary
(CTranslate2 cannot be interrupted inside a decode).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WhisperSettings:
    model_path: Path
    model_name: str
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 2
    beam_size: int = 1


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

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
