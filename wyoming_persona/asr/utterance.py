"""One utterance being received: its 16 kHz audio, where the speech is, and what to transcribe.

The VAD runs as audio arrives. `speech_start` is the first confirmed speech, `speech_end` the start of
the silence that ended the latest speech (None while speech goes on). The audio handed to Whisper is
trimmed to the speech plus `pad_ms` either side, zero-filled where the client sent less (Whisper drops
a first word that starts right at sample 0, and the early and the final decode then see the same input).
"""

from __future__ import annotations

import numpy as np

from ..audio import RATE, pcm_to_float
from ..vad.segmenter import VadEvent, VadEventKind, VadSettings, VoiceActivityDetector
from ..vad.silero import SileroModel


class Utterance:
    """Audio and speech bounds of one audio-start..audio-stop stream (blocking methods: run in a thread)."""

    def __init__(self, model: SileroModel, vad: VadSettings, pad_ms: int) -> None:
        self.vad = VoiceActivityDetector(model, vad)
        self.pad = pad_ms * RATE // 1000
        self.pcm = bytearray()
        self.speech_start: int | None = None
        self.speech_end: int | None = None

    @property
    def samples(self) -> int:
        return len(self.pcm) // 2

    @property
    def has_speech(self) -> bool:
        return self.speech_start is not None

    @property
    def speech_ended(self) -> bool:
        """Speech was heard and the latest speech has ended."""
        return self.speech_start is not None and self.speech_end is not None

    @property
    def bounds(self) -> tuple[int, int] | None:
        """(start, end) samples of the speech, if it has ended."""
        if self.speech_start is None or self.speech_end is None:
            return None
        return self.speech_start, self.speech_end

    def ending_bounds(self, silence_ms: int) -> tuple[int, int] | None:
        """The bounds the VAD will confirm unless speech resumes: (start, end) of the speech once
        `silence_ms` of a silence not yet confirmed have followed it; else None."""
        segmenter = self.vad.segmenter
        silence = segmenter.silence_start
        if self.speech_start is None or silence is None:
            return None
        if segmenter.position - silence < silence_ms * RATE // 1000:
            return None
        return self.speech_start, silence

    def feed(self, pcm: bytes) -> list[VadEvent]:
        self.pcm += pcm
        return self._track(self.vad.process(pcm_to_float(pcm)))

    def finish(self) -> list[VadEvent]:
        return self._track(self.vad.finish())

    def _track(self, events: list[VadEvent]) -> list[VadEvent]:
        for event in events:
            if event.kind is VadEventKind.STARTED:
                if self.speech_start is None:
                    self.speech_start = event.sample
                self.speech_end = None
            else:
                self.speech_end = event.sample
        return events

    def recent_audio(self, lead_ms: int, max_samples: int) -> np.ndarray:
        """Float audio from `lead_ms` before the first speech to now, at most the last `max_samples`."""
        start = max(0, (self.speech_start or 0) - lead_ms * RATE // 1000, self.samples - max_samples)
        return pcm_to_float(bytes(self.pcm[start * 2 :]))

    def speech_audio(self, bounds: tuple[int, int] | None = None) -> np.ndarray:
        """Float audio of the speech with padding (call once the speech has ended, or with `bounds`
        from `ending_bounds`)."""
        if bounds is None:
            if self.speech_start is None or self.speech_end is None:
                raise ValueError("no ended speech in this utterance")
            bounds = (self.speech_start, self.speech_end)
        speech_start, speech_end = bounds
        start = max(0, speech_start - self.pad)
        end = min(self.samples, speech_end + self.pad)
        audio = pcm_to_float(bytes(self.pcm[start * 2 : end * 2]))
        lead = self.pad - (speech_start - start)
        tail = self.pad - (end - speech_end)
        if lead > 0 or tail > 0:
            zeros = np.zeros
            audio = np.concatenate([zeros(max(lead, 0), np.float32), audio, zeros(max(tail, 0), np.float32)])
        return audio
