"""PCM helpers shared by the services: the 16 kHz mono s16 working format, WAV files, silence, chunking.

Python 3.13 has no `audioop`; there the `audioop-lts` package (a dependency on 3.13) provides the same module.
Python 3.11 warns when `audioop` is imported; `wyoming.audio` imports it, and pytest turns warnings into
errors, so the import happens here once with that one warning silenced. Import `wyoming.audio` through
this module (or after it) to stay quiet.
"""

from __future__ import annotations

import io
import warnings
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*audioop.*")
    import audioop

import numpy as np
from wyoming.audio import AudioChunk, AudioChunkConverter, AudioFormat, AudioStart, AudioStop

__all__ = [
    "CHANNELS",
    "RATE",
    "WIDTH",
    "AudioChunk",
    "AudioFormatError",
    "AudioStart",
    "AudioStop",
    "PcmFormat",
    "StreamConverter",
    "float_to_pcm",
    "pcm_chunks",
    "pcm_to_float",
    "read_wav",
    "resample",
    "silence",
    "wav_bytes",
    "write_wav",
]

RATE = 16000
WIDTH = 2
CHANNELS = 1
_MAX_RATE = 384_000
_MAX_CHANNELS = 32


class AudioFormatError(ValueError):
    """An audio format the client declared that cannot be converted."""


@dataclass(frozen=True, slots=True)
class PcmFormat:
    """Sample rate (Hz), sample width (bytes) and channel count of raw PCM."""

    rate: int = RATE
    width: int = WIDTH
    channels: int = CHANNELS

    @classmethod
    def of(cls, audio: AudioFormat) -> PcmFormat:
        """The format of an audio-start/audio-chunk, validated."""
        fmt = cls(audio.rate, audio.width, audio.channels)
        fmt.validate()
        return fmt

    def validate(self) -> None:
        for name, value, low, high in (
            ("rate", self.rate, 1000, _MAX_RATE),
            ("width", self.width, 1, 4),
            ("channels", self.channels, 1, _MAX_CHANNELS),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise AudioFormatError(f"audio {name} must be an integer in {low}..{high}, got {value!r}")

    @property
    def bytes_per_second(self) -> int:
        return self.rate * self.width * self.channels


class StreamConverter:
    """Converts one audio stream of a fixed format to 16 kHz mono s16, keeping the resampler state.

    Channels are averaged (wyoming's AudioChunkConverter sums them, which clips loud stereo).
    """

    def __init__(self, source: PcmFormat) -> None:
        self.source = source
        self._frame_bytes = source.width * source.channels
        self._partial = b""
        self._ratecv_state = None

    def convert(self, pcm: bytes) -> bytes:
        """Converted PCM; a trailing partial frame is kept for the next call."""
        data = self._partial + pcm
        usable = len(data) - len(data) % self._frame_bytes
        self._partial = data[usable:]
        data = data[:usable]
        if not data:
            return b""
        src = self.source
        if src.width != WIDTH:
            if src.width == 1:
                data = audioop.bias(data, 1, -128)
            data = audioop.lin2lin(data, src.width, WIDTH)
        if src.channels != CHANNELS:
            frames = np.frombuffer(data, dtype="<i2").reshape(-1, src.channels)
            data = frames.mean(axis=1).round().astype("<i2").tobytes()
        if src.rate != RATE:
            data, self._ratecv_state = audioop.ratecv(data, WIDTH, 1, src.rate, RATE, self._ratecv_state)
        return data


def pcm_to_float(pcm: bytes) -> np.ndarray:
    """s16 little-endian PCM to float32 in [-1, 1)."""
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm(samples: np.ndarray) -> bytes:
    """float samples in [-1, 1] to s16 little-endian PCM (clipped)."""
    return (np.clip(samples, -1.0, 32767 / 32768) * 32768.0).astype("<i2").tobytes()


def resample(pcm: bytes, fmt: PcmFormat, target: PcmFormat = PcmFormat()) -> bytes:
    """Whole-buffer conversion between formats (rate, width, channels)."""
    if fmt == target:
        return pcm
    if target == PcmFormat():
        return StreamConverter(fmt).convert(pcm)
    converter = AudioChunkConverter(rate=target.rate, width=target.width, channels=target.channels)
    return converter.convert(AudioChunk(fmt.rate, fmt.width, fmt.channels, pcm)).audio


def silence(seconds: float, fmt: PcmFormat = PcmFormat()) -> bytes:
    """Digital silence of the given length."""
    return bytes(round(seconds * fmt.rate) * fmt.width * fmt.channels)


def pcm_chunks(pcm: bytes, fmt: PcmFormat = PcmFormat(), milliseconds: int = 32) -> Iterator[bytes]:
    """Split PCM into chunks of about `milliseconds` each (whole frames)."""
    frame = fmt.width * fmt.channels
    size = max(1, fmt.rate * milliseconds // 1000) * frame
    for start in range(0, len(pcm), size):
        yield pcm[start : start + size]


def read_wav(path: str | Path | io.BytesIO) -> tuple[bytes, PcmFormat]:
    """PCM and format of a WAV file."""
    with wave.open(str(path) if isinstance(path, Path) else path, "rb") as wav:
        fmt = PcmFormat(wav.getframerate(), wav.getsampwidth(), wav.getnchannels())
        return wav.readframes(wav.getnframes()), fmt


def write_wav(path: str | Path | io.BytesIO, pcm: bytes, fmt: PcmFormat = PcmFormat()) -> None:
    """Write PCM as a WAV file."""
    with wave.open(str(path) if isinstance(path, Path) else path, "wb") as wav:
        wav.setframerate(fmt.rate)
        wav.setsampwidth(fmt.width)
        wav.setnchannels(fmt.channels)
        wav.writeframes(pcm)


def wav_bytes(pcm: bytes, fmt: PcmFormat = PcmFormat()) -> bytes:
    """PCM wrapped in an in-memory WAV file."""
    buffer = io.BytesIO()
    write_wav(buffer, pcm, fmt)
    return buffer.getvalue()
