"""Pure pieces of the ASR service: window sizing, the degenerate-output guard, languages, trimming."""

from __future__ import annotations

import numpy as np
import pytest
from vad.helpers import Speech

from wyoming_persona.asr.handler import normalize_language
from wyoming_persona.asr.transcriber import _degenerate
from wyoming_persona.asr.utterance import Utterance
from wyoming_persona.audio import pcm_chunks, silence
from wyoming_persona.vad.segmenter import VadSettings


@pytest.mark.parametrize(
    ("text", "degenerate"),
    [
        ("Turn on the kitchen light.", False),
        ("No. No.", False),
        ("Open the garage door. Open the garage door.", True),
        ("Close the blinds in the bedroom Close the blinds in the bedroom", True),
        ("Turn off all the lights downstairs. " * 12, True),
    ],
)
def test_degenerate_output_is_recognised(text: str, degenerate: bool) -> None:
    assert _degenerate(text, hit_limit=False) is degenerate


def test_window_covers_the_speech_plus_two_seconds_and_at_least_the_minimum(transcriber) -> None:
    assert transcriber._window(150) == 1000  # 1.5 s of audio -> the 10 s minimum
    assert transcriber._window(1234) == 1500  # 12.34 s + 2 s, rounded up to whole seconds
    assert transcriber._window(2900) is None  # too close to 30 s: the standard path


@pytest.mark.parametrize(("given", "expected"), [("en-US", "en"), ("EN_gb", "en"), ("de", "de"), ("", None)])
def test_language_region_is_dropped(given: str, expected: str | None) -> None:
    assert normalize_language(given) == expected


def test_speech_is_trimmed_and_padded_the_same_with_or_without_trailing_silence(
    silero, speech: Speech
) -> None:
    clip = speech.say("Open the garage door.")
    audios = []
    for tail in (0.0, 1.0):
        utterance = Utterance(silero, VadSettings(min_speech_ms=100, min_silence_ms=200), pad_ms=300)
        for chunk in pcm_chunks(silence(2.0) + clip + silence(tail), milliseconds=20):
            utterance.feed(chunk)
        utterance.finish()
        start, end = utterance.bounds
        assert 1.9 < start / 16000 < 2.2
        audios.append(utterance.speech_audio())
        assert len(audios[-1]) == end - start + 2 * 4800
    assert np.array_equal(audios[0], audios[1])
