"""Turns per-window speech probabilities into utterance start/stop points (pure logic, no model).

States: quiet -> starting (a speech candidate, confirmed after `min_speech_ms`) -> speaking -> stopping
(a silence candidate, confirmed after `min_silence_ms`) -> quiet. Hysteresis as in Silero's own
`get_speech_timestamps`: speech begins above `threshold` and ends below `neg_threshold`. Reported
positions are the first sample of the speech and the first sample of the silence that ended it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from .silero import WINDOW_SAMPLES, SileroModel

RATE = 16000


@dataclass(frozen=True, slots=True)
class VadSettings:
    """How eager the detector is."""

    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 500
    neg_threshold: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")
        if self.min_speech_ms < 0 or self.min_silence_ms < 0:
            raise ValueError("min_speech_ms and min_silence_ms must not be negative")

    @property
    def off_threshold(self) -> float:
        if self.neg_threshold is not None:
            return self.neg_threshold
        return max(self.threshold - 0.15, 0.01)


class VadEventKind(enum.Enum):
    STARTED = "started"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class VadEvent:
    kind: VadEventKind
    sample: int

    @property
    def milliseconds(self) -> int:
        return self.sample * 1000 // RATE


class _State(enum.Enum):
    QUIET = 0
    STARTING = 1
    SPEAKING = 2
    STOPPING = 3


class SpeechSegmenter:
    """Feed it probabilities window by window; it reports confirmed starts and stops."""

    def __init__(self, settings: VadSettings, window_samples: int = WINDOW_SAMPLES) -> None:
        self.settings = settings
        self.window = window_samples
        self._min_speech = settings.min_speech_ms * RATE // 1000
        self._min_silence = settings.min_silence_ms * RATE // 1000
        self.state = _State.QUIET
        self.position = 0  # samples seen so far
        self._candidate = 0

    @property
    def silence_start(self) -> int | None:
        """While a silence after speech is not yet confirmed: its first sample (else None)."""
        return self._candidate if self.state is _State.STOPPING else None

    @property
    def in_speech(self) -> bool:
        """True while confirmed speech has not been confirmed as ended."""
        return self.state in (_State.SPEAKING, _State.STOPPING)

    def push(self, prob: float) -> VadEvent | None:
        start = self.position
        self.position += self.window
        end = self.position
        s = self.settings
        if self.state is _State.QUIET:
            if prob >= s.threshold:
                self.state, self._candidate = _State.STARTING, start
                return self._confirm_start(end)
        elif self.state is _State.STARTING:
            if prob < s.off_threshold:
                self.state = _State.QUIET
            else:
                return self._confirm_start(end)
        elif self.state is _State.SPEAKING:
            if prob < s.off_threshold:
                self.state, self._candidate = _State.STOPPING, start
                return self._confirm_stop(end)
        elif prob >= s.threshold:  # STOPPING, speech resumed
            self.state = _State.SPEAKING
        else:
            return self._confirm_stop(end)
        return None

    def finish(self, end_sample: int | None = None) -> VadEvent | None:
        """End of audio: close an utterance still open (at the silence start, or the end of audio)."""
        end = self.position if end_sample is None else min(end_sample, self.position)
        state, self.state = self.state, _State.QUIET
        if state is _State.SPEAKING:
            return VadEvent(VadEventKind.STOPPED, end)
        if state is _State.STOPPING:
            return VadEvent(VadEventKind.STOPPED, self._candidate)
        return None

    def _confirm_start(self, end: int) -> VadEvent | None:
        if end - self._candidate >= max(self._min_speech, 1):
            self.state = _State.SPEAKING
            return VadEvent(VadEventKind.STARTED, self._candidate)
        return None

    def _confirm_stop(self, end: int) -> VadEvent | None:
        if end - self._candidate >= self._min_silence:
            self.state = _State.QUIET
            return VadEvent(VadEventKind.STOPPED, self._candidate)
        return None


class VoiceActivityDetector:
    """Silero probabilities plus the segmenter for one stream (blocking: call it off the event loop)."""

    def __init__(self, model: SileroModel, settings: VadSettings) -> None:
        self.detector = model.detector()
        self.segmenter = SpeechSegmenter(settings)
        self.samples = 0

    def process(self, samples: np.ndarray) -> list[VadEvent]:
        self.samples += len(samples)
        return self._push(self.detector.process(samples))

    def finish(self) -> list[VadEvent]:
        """End of stream: score the partial window and close an open utterance."""
        events = self._push(self.detector.flush())
        last = self.segmenter.finish(self.samples)
        return [*events, last] if last else events

    def _push(self, probs: np.ndarray) -> list[VadEvent]:
        events = []
        for prob in probs:
            event = self.segmenter.push(float(prob))
            if event is not None:
                events.append(event)
        return events
