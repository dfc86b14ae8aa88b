"""Audio conversion on every Python we support (3.11 and 3.13, where the stdlib `audioop` is gone)."""

from __future__ import annotations

import numpy as np
import wyoming.audio

from wyoming_persona.audio import RATE, PcmFormat, StreamConverter, pcm_to_float


def test_wyoming_converts_with_the_c_audioop() -> None:
    # Without audioop-lts on 3.13, wyoming falls back to its pure-Python subset: about 70 times
    # slower at resampling 48 kHz (2.5 s of CPU for 5 s of audio) and without 24-bit samples.
    assert wyoming.audio.audioop.__name__ == "audioop"


def _sine_24bit_stereo(freq: float, seconds: float, rate: int) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    samples = np.round(np.sin(2 * np.pi * freq * t) * 0.5 * (2**23 - 1)).astype("<i4")
    frames = np.repeat(samples, 2)  # left = right
    return b"".join(int(s).to_bytes(3, "little", signed=True) for s in frames)


def test_24_bit_stereo_44k1_stream_becomes_16k_mono() -> None:
    source = PcmFormat(rate=44100, width=3, channels=2)
    pcm = _sine_24bit_stereo(440.0, 1.0, source.rate)
    converter = StreamConverter(source)
    # Chunks that split frames, as a client may send them.
    out = b"".join(converter.convert(pcm[i : i + 1001]) for i in range(0, len(pcm), 1001))

    samples = pcm_to_float(out)
    assert abs(len(samples) - RATE) <= 2
    spectrum = np.abs(np.fft.rfft(samples))
    peak_hz = np.argmax(spectrum) * RATE / len(samples)
    assert abs(peak_hz - 440.0) <= 2.0
    assert 0.3 < np.sqrt(np.mean(samples**2)) * np.sqrt(2) < 0.6  # amplitude 0.5
