"""A loaded Piper voice and the single thread that owns it: synthesis never runs on the event loop.

Audio comes out in chunks while a sentence is still being synthesized (see `vits`): the model's
encoder runs once per sentence, then its decoder chunk by chunk, each chunk handed to the event loop
as soon as it is ready. A persona with a pitch change needs the whole sentence (the pitch shift works
on all of it), so it gets one chunk per sentence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .effects import apply_volume, pitch_shift, to_pcm16
from .vits import SplitVoice, session_options, split_graph
from .voices import VoiceFile

if TYPE_CHECKING:
    from piper import PiperVoice

_LOGGER = logging.getLogger(__name__)

SAMPLE_WIDTH = 2
CHANNELS = 1

# Sentences whose loudest sample sets the level of streamed audio (see `PiperWorker._gain`).
_CALIBRATION = (
    "Hello, I am ready to help you around the house.",
    "Should I turn on the lights in the kitchen?",
    "It is twenty past seven, and the weather is fine.",
)
_QUIET = 1e-8


@dataclass(frozen=True)
class VoiceSettings:
    """How to speak with a loaded voice: Piper's knobs plus our effects."""

    speaker_id: int | None = None
    speed: float = 1.0
    pitch: float = 0.0
    volume: float = 1.0
    noise_scale: float | None = None
    noise_w_scale: float | None = None

    @property
    def neutral(self) -> bool:
        """No pitch or volume change: the audio goes out as Piper makes it."""
        return abs(self.pitch) < 1e-3 and self.volume == 1.0


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
        self._split: SplitVoice | None = None
        self._level = 1.0
        self.pieces = 0
        """Pieces of text synthesized (tests use it to see that work stopped)."""

    @property
    def sample_rate(self) -> int:
        return self.voice.sample_rate

    @property
    def streams_chunks(self) -> bool:
        """True when a neutral sentence comes out in several chunks (the model could be split)."""
        return self._split is not None

    async def load(self) -> None:
        """Load the model and warm it up (the first ONNX run is the slowest), on the worker thread."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        import json

        import onnxruntime
        from piper import PiperConfig, PiperVoice

        if self._piper is not None:
            return
        with open(self.voice.config_path, encoding="utf-8") as file:
            config = PiperConfig.from_dict(json.load(file))
        if config.sample_rate != self.voice.sample_rate:
            raise ValueError(
                f"{self.voice.config_path}: sample rate {config.sample_rate} changed while loading"
            )
        split = split_graph(self.voice.model_path)
        if split is not None:
            self._split = SplitVoice(split, config.hop_length)
        # The whole graph too, for every sentence but a reply's first: one run is faster than the two
        # halves (bench/tts.py: total time 1.06x the reference's instead of 1.19x), as Piper does it.
        session = onnxruntime.InferenceSession(
            str(self.voice.model_path), sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
        self._piper = PiperVoice(session=session, config=config)
        peaks = [np.abs(self._whole(feeds)).max() for text in _CALIBRATION for feeds in self._phrases(text)]
        self._level = max(float(np.median(peaks)), _QUIET)
        for _ in self._sentences("Ready.", VoiceSettings()):  # warm up the chunk sizes too
            pass
        self.pieces = 0

    async def synthesize(self, text: str, settings: VoiceSettings, cancel: threading.Event) -> bytes:
        """16-bit mono PCM at `sample_rate` for one piece of text."""
        return b"".join([chunk async for chunk in self.stream(text, settings, cancel)])

    async def stream(
        self, text: str, settings: VoiceSettings, cancel: threading.Event, early: bool = True
    ) -> AsyncIterator[bytes]:
        """16-bit mono PCM for one piece of text, chunk by chunk as the worker thread makes it.

        `early`: decode the piece's first sentence in growing chunks so its audio starts at once. That
        costs some decoder work (each chunk decodes context frames twice), so a caller that has already
        sent audio passes False and later sentences are decoded whole, as fast as Piper.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()

        stop = threading.Event()

        def put(item: bytes | BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the event loop is gone: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def produce() -> None:
            try:
                for chunk in self._synthesize(text, settings, cancel, early):
                    if stop.is_set():
                        return
                    put(chunk)
            except BaseException as err:  # handed to the event loop, raised there
                put(err)
            else:
                put(None)

        loop.run_in_executor(self._executor, produce)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()  # a consumer that stopped early (cancelled, or its client gone) wants no more

    def _synthesize(
        self, text: str, settings: VoiceSettings, cancel: threading.Event, early: bool = True
    ) -> Iterator[bytes]:
        if self._piper is None:
            raise RuntimeError(f"voice {self.voice.name} is not loaded")
        self.pieces += 1
        for audio in self._sentences(text, settings, cancel, early):
            if not settings.neutral:
                audio = apply_volume(pitch_shift(audio, self.sample_rate, settings.pitch), settings.volume)
            yield to_pcm16(audio)

    def _sentences(
        self,
        text: str,
        settings: VoiceSettings,
        cancel: threading.Event | None = None,
        early: bool = True,
    ) -> Iterator[np.ndarray]:
        """Float audio: one array per espeak sentence, or several for the first one when `early`."""
        for index, feeds in enumerate(self._phrases(text, settings, cancel)):
            if self._split is None or not settings.neutral or not early or index > 0:
                yield _normalized(self._whole(feeds))  # exactly Piper's per-sentence peak normalization
                continue
            gain = None
            for audio in self._split.audio_chunks(feeds):
                if cancel is not None and cancel.is_set():
                    raise SynthesisCancelled
                gain = self._gain(audio) if gain is None else gain
                yield apply_volume(audio, gain)

    def _phrases(
        self, text: str, settings: VoiceSettings = VoiceSettings(), cancel: threading.Event | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """The model's inputs for each espeak sentence of `text`."""
        assert self._piper is not None
        for phonemes in self._piper.phonemize(text):
            if not phonemes:
                continue
            if cancel is not None and cancel.is_set():
                raise SynthesisCancelled
            yield self._feeds(self._piper.phonemes_to_ids(phonemes), settings)

    def _whole(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Raw float audio of one sentence in one piece."""
        assert self._piper is not None
        return self._piper.session.run(None, feeds)[0].reshape(-1)

    def _gain(self, first: np.ndarray) -> float:
        """Gain for a sentence streamed in chunks, from its first chunk.

        Piper scales each sentence to a peak of 1.0, which needs the whole sentence. Streamed, the
        gain comes from the louder of the first chunk's peak and the voice's usual sentence peak
        (measured at load); a later peak above that is softly limited rather than clipped.
        """
        return 1.0 / max(float(np.abs(first).max()), self._level)

    def _feeds(self, phoneme_ids: list[int], settings: VoiceSettings) -> dict[str, np.ndarray]:
        """The model's inputs, as Piper's `phoneme_ids_to_audio` builds them."""
        assert self._piper is not None
        config = self._piper.config
        noise_scale = config.noise_scale if settings.noise_scale is None else settings.noise_scale
        noise_w_scale = config.noise_w_scale if settings.noise_w_scale is None else settings.noise_w_scale
        feeds = {
            "input": np.array([phoneme_ids], dtype=np.int64),
            "input_lengths": np.array([len(phoneme_ids)], dtype=np.int64),
            "scales": np.array(
                [noise_scale, config.length_scale / settings.speed, noise_w_scale], dtype=np.float32
            ),
        }
        if config.num_speakers > 1:
            speaker_id = config.default_speaker_id if settings.speaker_id is None else settings.speaker_id
            feeds["sid"] = np.array([speaker_id], dtype=np.int64)
        return feeds

    def close(self) -> None:
        self._executor.shutdown(wait=False)


def _normalized(audio: np.ndarray) -> np.ndarray:
    """Piper's per-sentence normalization: peak at 1.0."""
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    if peak < _QUIET:
        return np.zeros_like(audio, dtype=np.float32)
    return (audio / peak).astype(np.float32)
