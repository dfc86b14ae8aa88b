"""Smart Turn v3 end-of-turn judgement: the real model on Piper speech, and the ASR server ending turns by it.

Piper reads every text as a whole sentence, so a text that stops mid-sentence still ends with a final
fall. The unfinished phrase here is the start of a longer sentence cut where the next word would begin:
its prosody says more is coming. Measured: the complete question scores 0.97, the cut phrase 0.02
(0.06 to 0.11 when the cut moves 50 ms either way).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import threading

import numpy as np
import pytest
from vad.helpers import TIMEOUT, Speech, connect, normalize
from wyoming.asr import Transcribe
from wyoming.info import Describe

from wyoming_persona.asr import smart_turn
from wyoming_persona.asr.handler import AsrSettings
from wyoming_persona.asr.smart_turn import SmartTurnModel, SmartTurnNotFoundError
from wyoming_persona.audio import AudioChunk, AudioStart, AudioStop, pcm_chunks, pcm_to_float, silence
from wyoming_persona.cli import main

QUESTION = "What is the capital of Italy?"
SECOND = "What is the capital of France?"  # after QUESTION and a pause: 0.99
UNFINISHED = "I would like to know the"
UNFINISHED_WHOLE = "I would like to know the weather in Paris."
CHUNK_MS = 32
ENDPOINT_MS = 2000  # the silence endpoint; Smart Turn must beat it by audio position, not by the clock
# Silence counted from the end of the clip, not from where the VAD put the end of speech (a little
# earlier: Piper's clips end with a quiet tail), so the two cases are told apart with a margin.
SPLIT_MS = ENDPOINT_MS - 500


def unfinished(speech: Speech) -> bytes:
    """The whole sentence cut at the end of the phrase said alone (Piper with noise 0 is deterministic)."""
    alone = np.abs(pcm_to_float(speech.say(UNFINISHED)))
    cut = int(np.nonzero(alone > 0.02)[0][-1]) + 1
    return speech.say(UNFINISHED_WHOLE)[: cut * 2]


def test_a_complete_question_scores_high_and_a_cut_off_phrase_low(turn_model, speech) -> None:
    complete = turn_model.probability(pcm_to_float(silence(0.5) + speech.say(QUESTION) + silence(0.2)))
    cut_off = turn_model.probability(pcm_to_float(silence(0.5) + unfinished(speech) + silence(0.2)))
    assert complete > 0.8
    assert cut_off < 0.3


def test_features_are_the_last_8_seconds_left_padded(turn_model, speech) -> None:
    question = pcm_to_float(speech.say(QUESTION))
    features = turn_model.features(question)
    assert features.shape == (1, 80, 800) and features.dtype == np.float32
    padded = np.concatenate([np.zeros(128000 - len(question), np.float32), question])
    assert np.array_equal(features, turn_model.features(padded))
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 16000 * 3).astype(np.float32)
    assert np.array_equal(turn_model.features(np.concatenate([noise, padded])), features)


def test_bad_audio_is_refused(turn_model) -> None:
    with pytest.raises(ValueError, match="mono"):
        turn_model.probability(np.zeros((2, 16000), np.float32))


def test_a_run_can_be_stopped(turn_model) -> None:
    """The server stops a judgement that no longer matters, so it does not slow the Whisper decode."""
    run = turn_model.run_options()
    run.terminate = True
    with pytest.raises(Exception, match="terminate"):
        turn_model.probability(np.zeros(16000, np.float32), run)


def test_a_missing_package_names_what_to_install(monkeypatch, tmp_path, caplog) -> None:
    with pytest.raises(SmartTurnNotFoundError, match="not found"):
        SmartTurnModel(tmp_path / "smart-turn.onnx")

    def not_installed(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(smart_turn.importlib.metadata, "files", not_installed)
    with pytest.raises(SmartTurnNotFoundError, match=r"pip install --no-deps pipecat-ai==1\.14\.0"):
        smart_turn.default_model_path()
    caplog.set_level(logging.ERROR)
    assert main(["asr", "--smart-turn", "--endpointing-ms", "500", "--uri", "tcp://127.0.0.1:0"]) == 2
    assert "pipecat-ai" in caplog.text


def test_smart_turn_needs_endpointing(caplog) -> None:
    caplog.set_level(logging.ERROR)
    assert main(["asr", "--smart-turn", "--uri", "tcp://127.0.0.1:0"]) == 2
    assert "--smart-turn needs --endpointing-ms" in caplog.text


async def paced(server, speech_pcm: bytes, silence_s: float) -> tuple[str, int]:
    """Send lead + speech + silence in real time; (transcript, ms of trailing silence sent before it came)."""
    lead = silence(0.3)
    chunks = pcm_chunks(lead + speech_pcm + silence(silence_s), milliseconds=CHUNK_MS)
    sent = 0
    async with connect(server) as client:
        await client.send(Transcribe(language="en").event(), AudioStart(16000, 2, 1).event())
        answer = asyncio.create_task(client.receive_until("transcript-stop"))
        at_answer = None
        for chunk in chunks:
            if answer.done():
                break
            await client.send(AudioChunk(16000, 2, 1, chunk).event())
            sent += len(chunk)
            await asyncio.wait([answer], timeout=CHUNK_MS / 1000)
        async with asyncio.timeout(TIMEOUT):
            events = await answer
        at_answer = sent
        await client.send(AudioStop().event())
    text = next(event.data["text"] for event in events if event.type == "transcript")
    return text, (at_answer - len(lead) - len(speech_pcm)) * 1000 // 32000


async def test_a_complete_question_ends_before_the_silence_endpoint(asr_server, turn_model, speech) -> None:
    settings = AsrSettings(endpoint_ms=ENDPOINT_MS)
    async with asr_server(settings, turn_model=turn_model) as server:
        text, silence_ms = await paced(server, speech.say(QUESTION), 3.0)
    assert normalize(text) == "what is the capital of italy"
    assert silence_ms < SPLIT_MS, f"answered after {silence_ms} ms of silence"


async def test_a_cut_off_phrase_waits_for_the_silence_endpoint(asr_server, turn_model, speech) -> None:
    settings = AsrSettings(endpoint_ms=ENDPOINT_MS)
    async with asr_server(settings, turn_model=turn_model) as server:
        text, silence_ms = await paced(server, unfinished(speech), 3.0)
    assert normalize(text).startswith("i would like to know")
    assert silence_ms >= SPLIT_MS, f"answered after {silence_ms} ms of silence"


async def test_speech_that_resumes_makes_the_judgement_stale(asr_server, turn_model, speech, monkeypatch):
    """The judgement of the first question is held until the server has read the speech that follows."""
    release, finished = threading.Event(), threading.Semaphore(0)
    judged = turn_model.probability

    def held(audio: np.ndarray, run=None) -> float:
        release.wait(TIMEOUT)
        try:
            return judged(audio, run)
        finally:
            finished.release()

    monkeypatch.setattr(turn_model, "probability", held)
    second = speech.say(SECOND)
    half = len(second) // 4 * 2  # mid-speech: the VAD has not seen it end
    settings = AsrSettings(endpoint_ms=3000)
    async with asr_server(settings, turn_model=turn_model) as server, connect(server) as client:
        await client.send(Transcribe(language="en").event())
        await client.send_audio(
            silence(0.3) + speech.say(QUESTION) + silence(0.6) + second[:half], stop=False
        )
        await client.send(Describe().event())
        assert (await client.receive()).type == "info"  # every chunk so far has been handled
        release.set()
        assert await asyncio.to_thread(finished.acquire, timeout=TIMEOUT)
        await client.send(Describe().event())  # lets the released judgement decide first
        assert (await client.receive()).type == "info"
        await client.send_audio(second[half:] + silence(0.3), start=False, stop=False)
        events = await client.receive_until("transcript-stop")
        text = next(event.data["text"] for event in events if event.type == "transcript")
        assert normalize(text) == "what is the capital of italy what is the capital of france"
        await client.send(AudioStop().event(), Describe().event())
        assert (await client.receive()).type == "info", "one transcript only"


async def test_without_endpointing_the_client_ends_the_turn(
    asr_server, turn_model, speech, monkeypatch
) -> None:
    """Home Assistant's own VAD sends audio-stop: Smart Turn is not even asked."""
    asked: list[int] = []
    judged = turn_model.probability
    monkeypatch.setattr(
        turn_model, "probability", lambda audio, run=None: asked.append(len(audio)) or judged(audio, run)
    )
    async with asr_server(AsrSettings(), turn_model=turn_model) as server, connect(server) as client:
        await client.send(Transcribe(language="en").event())
        await client.send_audio(silence(0.3) + speech.say(QUESTION) + silence(1.0), stop=False)
        await client.send(Describe().event())
        assert (await client.receive()).type == "info"
        await client.send(AudioStop().event())
        events = await client.receive_until("transcript-stop")
    text = next(event.data["text"] for event in events if event.type == "transcript")
    assert normalize(text) == "what is the capital of italy"
    assert asked == []
