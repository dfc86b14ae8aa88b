"""The segmenter's state machine on synthetic probabilities, and the streaming Silero detector."""

from __future__ import annotations

import numpy as np
import pytest

from wyoming_persona.audio import pcm_to_float, silence
from wyoming_persona.vad.segmenter import SpeechSegmenter, VadSettings
from wyoming_persona.vad.silero import WINDOW_SAMPLES, SileroModel

from .helpers import Speech

W = WINDOW_SAMPLES  # 32 ms per probability


def run(settings: VadSettings, probs: list[float], finish: bool = True) -> list[tuple[str, int]]:
    segmenter = SpeechSegmenter(settings)
    events = [segmenter.push(p) for p in probs]
    if finish:
        events.append(segmenter.finish())
    return [(e.kind.value, e.sample // W) for e in events if e is not None]


def test_start_needs_min_speech_and_stop_needs_min_silence() -> None:
    settings = VadSettings(threshold=0.5, min_speech_ms=96, min_silence_ms=96)  # 3 windows each
    probs = [0.0] * 2 + [0.9] * 2 + [0.0] * 3 + [0.9] * 5 + [0.1] * 2 + [0.9] * 2 + [0.0] * 4
    # the 2-window blip is ignored; a 2-window gap does not end speech; stop at the silence start
    assert run(settings, probs) == [("started", 7), ("stopped", 16)]


def test_hysteresis_keeps_speech_between_thresholds() -> None:
    settings = VadSettings(threshold=0.5, min_speech_ms=0, min_silence_ms=64)
    assert run(settings, [0.6, 0.4, 0.4, 0.4, 0.2, 0.2, 0.2]) == [("started", 0), ("stopped", 4)]


def test_finish_closes_open_speech_at_the_end_of_audio_or_the_silence_start() -> None:
    settings = VadSettings(min_speech_ms=0, min_silence_ms=500)
    assert run(settings, [0.9] * 4) == [("started", 0), ("stopped", 4)]
    assert run(settings, [0.9] * 4 + [0.0] * 3) == [("started", 0), ("stopped", 4)]
    assert run(VadSettings(min_speech_ms=250), [0.9] * 3) == []


@pytest.mark.parametrize("bad", [{"threshold": 1.5}, {"min_speech_ms": -1}])
def test_settings_are_validated(bad: dict) -> None:
    with pytest.raises(ValueError):
        VadSettings(**bad)


def test_streaming_detector_matches_faster_whispers_batch_silero(speech: Speech) -> None:
    from faster_whisper.vad import get_vad_model

    audio = pcm_to_float(silence(0.3) + speech.say("Turn on the kitchen light.") + silence(0.5))
    audio = audio[: len(audio) // W * W]
    expected = np.asarray(get_vad_model()(audio)).reshape(-1)
    detector = SileroModel().detector()
    # odd chunk sizes: windows and context must carry across calls
    got = np.concatenate([detector.process(audio[i : i + 700]) for i in range(0, len(audio), 700)])
    assert len(got) == len(expected)
    assert np.allclose(got, expected, atol=1e-4)
    assert expected.max() > 0.9 and expected[:5].max() < 0.2
