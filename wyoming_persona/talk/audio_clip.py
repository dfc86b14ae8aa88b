"""Small PCM clip helpers for the talk client: WAV in and out, 16 kHz conversion, end of speech."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from wyoming.audio import AudioChunk, AudioChunkConverter, AudioFormat

ASR_FORMAT = AudioFormat(rate=16000, width=2, channels=1)


@dataclass(frozen=True)
class AudioClip:
    """Raw PCM with its format."""

    pcm: bytes
    rate: int
    width: int
    channels: int

    @property
    def seconds(self) -> float:
        return len(self.pcm) / (self.rate * self.width * self.channels)

    @staticmethod
    def from_wav(path: Path) -> AudioClip:
        with wave.open(str(path), "rb") as wav:
            return AudioClip(
                wav.readframes(wav.getnframes()), wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
            )

    def to_wav(self, path: Path) -> None:
        with wave.open(str(path), "wb") as wav:
            wav.setframerate(self.rate)
            wav.setsampwidth(self.width)
            wav.setnchannels(self.channels)
            wav.writeframes(self.pcm)

    def to_asr_format(self) -> AudioClip:
        converter = AudioChunkConverter(ASR_FORMAT.rate, ASR_FORMAT.width, ASR_FORMAT.channels)

        chunk = converter.convert(AudioChunk(self.rate, self.width, self.channels, self.pcm))
        return AudioClip(chunk.audio, chunk.rate, chunk.width, chunk.channels)

    def padded(self, before: float, after: float) -> AudioClip:
        """Add silence around the clip, as a satellite's recording has."""
        frame = self.width * self.channels

        def silence(seconds: float) -> bytes:
            return bytes(int(seconds * self.rate) * frame)

        return AudioClip(silence(before) + self.pcm + silence(after), self.rate, self.width, self.channels)


def speech_end_seconds(clip: AudioClip, window: float = 0.02) -> float:
    """Where the last loud 20 ms window ends: the end of speech a satellite's VAD would see.

    Expects 16-bit mono; "loud" is 2% of the clip's peak RMS (about -34 dB), so it works at any
    recording level and still counts a fading last syllable as speech.
    """
    samples = np.frombuffer(clip.pcm, dtype=np.int16).astype(np.float32)
    size = max(1, int(clip.rate * window))
    count = len(samples) // size
    if count == 0:
        return 0.0
    rms = np.sqrt(np.mean(samples[: count * size].reshape(count, size) ** 2, axis=1))
    loud = np.nonzero(rms > max(0.02 * rms.max(), 100.0))[0]
    if len(loud) == 0:
        return 0.0
    return float((loud[-1] + 1) * size / clip.rate)
