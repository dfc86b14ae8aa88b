"""Voice effects on float audio: pitch shift that keeps the duration, and volume with a soft limiter.

The pitch shift time-stretches with WSOLA (waveform-similarity overlap-add, which keeps speech free of
the phasiness of a phase vocoder) and then resamples band-limited back to the original length, so the
pitch moves by 2^(semitones/12) and the duration stays exactly the same.
"""

from __future__ import annotations

import numpy as np

_FRAME_SECONDS = 0.030
_TOLERANCE_SECONDS = 0.008
_LIMIT_KNEE = 0.9
_SILENCE_RMS = 300.0  # about -40 dBFS for 16-bit PCM


def pitch_shift(audio: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
    """Shift the pitch of mono float audio by `semitones`, keeping its length."""
    if abs(semitones) < 1e-3 or len(audio) < 2:
        return audio.astype(np.float32, copy=False)
    ratio = 2.0 ** (semitones / 12.0)
    stretched = time_stretch(audio, sample_rate, ratio)
    return resample(stretched, len(audio)).astype(np.float32)


def time_stretch(audio: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """WSOLA: make the audio `factor` times longer without changing its pitch."""
    x = np.asarray(audio, dtype=np.float64)
    target = max(1, round(len(x) * factor))
    frame = max(64, int(sample_rate * _FRAME_SECONDS)) // 2 * 2
    hop_out = frame // 2
    hop_in = hop_out / factor
    tolerance = max(1, int(sample_rate * _TOLERANCE_SECONDS))
    window = np.hanning(frame)

    padded = np.concatenate([np.zeros(frame + tolerance), x, np.zeros(4 * frame + 2 * tolerance)])
    offset = frame + tolerance  # index in `padded` of x[0]
    frames = target // hop_out + 2
    out = np.zeros(frames * hop_out + frame)
    norm = np.zeros_like(out)

    previous = offset  # start of the previously copied input segment
    for k in range(frames):
        ideal = offset + round(k * hop_in) - hop_out
        if k == 0:
            start = ideal
        else:
            # The natural continuation of the last segment; pick the nearby segment most like it.
            natural = padded[previous + hop_out : previous + hop_out + frame]
            lo = max(0, ideal - tolerance)
            region = padded[lo : ideal + tolerance + frame]
            scores = np.correlate(region, natural, mode="valid")
            start = lo + int(np.argmax(scores))
        segment = padded[start : start + frame]
        if len(segment) < frame:
            break
        position = k * hop_out
        out[position : position + frame] += segment * window
        norm[position : position + frame] += window
        previous = start

    norm[norm < 1e-6] = 1.0
    stretched = out / norm
    # Output frame k centres on input time k*hop_in; drop the half frame of lead-in.
    return stretched[hop_out : hop_out + target]


def resample(audio: np.ndarray, length: int) -> np.ndarray:
    """Band-limited resampling to exactly `length` samples (FFT method)."""
    n = len(audio)
    if n == length or n == 0:
        return np.asarray(audio, dtype=np.float64)
    spectrum = np.fft.rfft(audio)
    bins = length // 2 + 1
    if bins <= len(spectrum):
        spectrum = spectrum[:bins]
    else:
        spectrum = np.concatenate([spectrum, np.zeros(bins - len(spectrum), dtype=spectrum.dtype)])
    return np.fft.irfft(spectrum, n=length) * (length / n)


def apply_volume(audio: np.ndarray, volume: float) -> np.ndarray:
    """Scale by `volume`; peaks above the knee are softly limited instead of clipped."""
    y = np.asarray(audio, dtype=np.float32) * np.float32(volume)
    magnitude = np.abs(y)
    over = magnitude > _LIMIT_KNEE
    if np.any(over):
        room = 1.0 - _LIMIT_KNEE
        limited = _LIMIT_KNEE + room * np.tanh((magnitude[over] - _LIMIT_KNEE) / room)
        y[over] = np.sign(y[over]) * limited
    return y


def to_pcm16(audio: np.ndarray) -> bytes:
    """Float audio in [-1, 1] to 16-bit little-endian PCM."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def trim_edges(pcm: bytes, sample_rate: int, keep_lead: float | None, keep_tail: float | None) -> bytes:
    """Cut the silence at the edges of 16-bit PCM down to `keep_*` seconds (None: leave that edge).

    Piper pads every call with its own sentence-end silence; where one sentence was synthesized in two
    pieces, that padding would put a half-second stall mid-sentence, so the join is trimmed to the
    length of a comma pause.
    """
    samples = np.frombuffer(pcm, dtype="<i2")
    window = max(1, int(sample_rate * 0.01))
    count = len(samples) // window
    if count == 0:
        return pcm
    frames = samples[: count * window].astype(np.float32).reshape(count, window)
    loud = np.nonzero(np.sqrt(np.mean(frames**2, axis=1)) > _SILENCE_RMS)[0]
    if len(loud) == 0:
        return pcm
    start, end = 0, len(samples)
    if keep_lead is not None:
        start = max(0, loud[0] * window - int(keep_lead * sample_rate))
    if keep_tail is not None:
        end = min(len(samples), (loud[-1] + 1) * window + int(keep_tail * sample_rate))
    return samples[start:end].tobytes()


class EdgeTrimmer:
    """`trim_edges` for audio that arrives in chunks: the same result, with audio let out early.

    Leading silence is held until the first loud 10 ms window (then `keep_lead` of it goes out);
    silence after the last loud window so far is held until more sound follows it, or the end
    (then `keep_tail` of it goes out).
    """

    def __init__(self, sample_rate: int, keep_lead: float | None, keep_tail: float | None) -> None:
        self._window = max(1, int(sample_rate * 0.01))
        self._lead = None if keep_lead is None else int(keep_lead * sample_rate)
        self._tail = None if keep_tail is None else int(keep_tail * sample_rate)
        self._held = np.zeros(0, dtype="<i2")
        self._base = 0  # index of self._held[0] in the whole audio
        self._sent = 0  # audio before this index went out or was cut
        self._total = 0
        self._scanned = 0  # windows before this index are classified
        self._first_loud: int | None = None
        self._loud_end: int | None = None

    def add(self, pcm: bytes) -> bytes:
        """Audio that can go out now."""
        self._held = np.concatenate([self._held, np.frombuffer(pcm, dtype="<i2")])
        self._total += len(pcm) // 2
        count = (self._total - self._scanned) // self._window
        if count:
            start = self._scanned - self._base
            frames = self._held[start : start + count * self._window].astype(np.float32)
            rms = np.sqrt(np.mean(frames.reshape(count, self._window) ** 2, axis=1))
            loud = np.nonzero(rms > _SILENCE_RMS)[0]
            if len(loud):
                if self._first_loud is None:
                    self._first_loud = self._scanned + int(loud[0]) * self._window
                self._loud_end = self._scanned + (int(loud[-1]) + 1) * self._window
            self._scanned += count * self._window
        return self._release(final=False)

    def finish(self) -> bytes:
        """The rest, at the end of the audio."""
        return self._release(final=True)

    def _release(self, final: bool) -> bytes:
        if self._first_loud is None:  # no sound yet: hold everything, or at the end let it all out
            return self._take(self._sent, self._total) if final else b""
        start = self._sent
        if self._lead is not None:
            start = max(self._sent, self._first_loud - self._lead)
        end = self._total
        if self._tail is not None:
            assert self._loud_end is not None
            end = min(self._total, self._loud_end + self._tail) if final else self._loud_end
        return self._take(start, max(start, end))

    def _take(self, start: int, end: int) -> bytes:
        out = self._held[start - self._base : end - self._base].tobytes()
        self._sent = end
        keep = min(end, self._scanned)  # an unclassified partial window stays for the next chunk
        self._held = self._held[keep - self._base :]
        self._base = keep
        return out
