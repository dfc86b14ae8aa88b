"""A loaded Piper voice and the single thread that owns it: synthesis never runs on the event loop."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from .effects import apply_volume, pitch_shift, to_pcm16
from .voices import VoiceFile

if TYPE_CHECKING:
    from piper import PiperVoice

_LOGGER = logging.getLogger(__name__)

SAMPLE_WIDTH = 2
CHANNELS = 1


@dataclass(frozen=True)
class VoiceSettings:
    """How to speak with a loaded voice: Piper's knobs plus our effects."""

    speaker_id: int | None = None
    speed: float = 1.0
    pitch: float = 0.0
    volume: float = 1.0
    noise_scale: float | None = None
    noise_w_scale: float | None = None


class SynthesisCancelled(Exception):
    """The client went away; the rest of the text is not spoken."""


class PiperWorker:
    """Owns one PiperVoice and a single-thread executor; every model call runs on that thread.

    Dropping the last reference (e.g. after the pool evicts it) lets the thread exit, so a response
    still holding the worker finishes safely.
    """

    def __init__(self, voice: VoiceFile) -> None:
        self.voice = voice
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"piper-{voice.name}")
        self._piper: PiperVoice | None = None
        self.pieces = 0
        """Pieces of text synthesized (tests use it to see that work stopped)."""

    @property
    def sample_rate(self) -> int:
        return self.voice.sample_rate

    async def load(self) -> None:
        """Load the model and warm it up (the first ONNX run is the slowest), on the worker thread."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        from piper import PiperVoice

        if self._piper is not None:
            return
        piper = PiperVoice.load(self.voice.model_path, self.voice.config_path)
        rate = piper.config.sample_rate
        if rate != self.voice.sample_rate:
            raise ValueError(f"{self.voice.config_path}: sample rate {rate} changed while loading")
        self._piper = piper
        self._synthesize("Ready.", VoiceSettings(), threading.Event())
        self.pieces = 0

    async def synthesize(self, text: str, settings: VoiceSettings, cancel: threading.Event) -> bytes:
        """16-bit mono PCM at `sample_rate` for one piece of text."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(self._synthesize, text, settings, cancel))

    def _synthesize(self, text: str, settings: VoiceSettings, cancel: threading.Event) -> bytes:
        from piper import SynthesisConfig

        if self._piper is None:
            raise RuntimeError(f"voice {self.voice.name} is not loaded")
        length_scale = self._piper.config.length_scale / settings.speed
        config = SynthesisConfig(
            speaker_id=settings.speaker_id,
            length_scale=length_scale,
            noise_scale=settings.noise_scale,
            noise_w_scale=settings.noise_w_scale,
        )
        self.pieces += 1
        parts = []
        for chunk in self._piper.synthesize(text, config):  # one chunk per espeak sentence
            if cancel.is_set():
                raise SynthesisCancelled
            audio = pitch_shift(chunk.audio_float_array, chunk.sample_rate, settings.pitch)
            parts.append(to_pcm16(apply_volume(audio, settings.volume)))
        return b"".join(parts)

    def close(self) -> None:
        self._executor.shutdown(wait=False)
