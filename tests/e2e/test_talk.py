"""The whole voice round trip: real services on free loopback ports, `wyoming-persona talk` driving a turn."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from vad.helpers import Speech, normalize

from wyoming_persona.suite import free_ports, running_suite

pytestmark = pytest.mark.model
QUESTION = "What is the capital of France?"


def median_f0(samples: np.ndarray, rate: int) -> float:
    """Median pitch of voiced 40 ms frames, by autocorrelation (50-400 Hz)."""
    size, pitches = int(0.04 * rate), []
    loud = 0.1 * np.abs(samples).max()
    for start in range(0, len(samples) - size, size // 2):
        frame = samples[start : start + size] - samples[start : start + size].mean()
        if np.sqrt(np.mean(frame**2)) < loud * 0.3:
            continue
        corr = np.correlate(frame, frame, "full")[size - 1 :]
        low, high = int(rate / 400), int(rate / 50)
        lag = low + int(np.argmax(corr[low:high]))
        if corr[lag] > 0.4 * corr[0]:
            pitches.append(rate / lag)
    return float(np.median(pitches))


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory: pytest.TempPathFactory, speech: Speech) -> Path:
    """The question spoken by Piper, with the silence a satellite records around it."""
    audio = speech.native_pcm(QUESTION)
    rate = speech.native.rate
    silence = bytes(int(0.4 * rate) * 2)
    path = tmp_path_factory.mktemp("talk") / "question.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setframerate(rate)
        wav.setsampwidth(2)
        wav.setnchannels(1)
        wav.writeframes(silence + audio + silence + silence)
    return path


@pytest.fixture
async def suite(personas_dir: Path, state_dir: Path, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    ports = free_ports(("vad", "asr", "persona", "tts", "api"))
    logs = tmp_path / "logs"
    logs.mkdir()
    async with asyncio.timeout(300):
        async with running_suite(personas_dir, state_dir, logs, ports, ("asr", "persona", "tts")) as running:
            yield {name: service.address for name, service in running.services.items()}


def talk(suite: dict[str, str], personas_dir: Path, state_dir: Path, *args: str) -> dict:
    command = [
        sys.executable, "-m", "wyoming_persona", "talk", "--json", "--no-realtime",
        "--asr", suite["asr"], "--persona-uri", suite["persona"], "--tts", suite["tts"],
        "--personas-dir", str(personas_dir), "--state-dir", str(state_dir), *args,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        assert wav.getsampwidth() == 2 and wav.getnchannels() == 1
        pcm = wav.readframes(wav.getnframes())
        return np.frombuffer(pcm, dtype=np.int16).astype(np.float32), wav.getframerate()


async def test_voice_turn_end_to_end(
    suite: dict[str, str], personas_dir: Path, state_dir: Path, question_wav: Path, tmp_path: Path
) -> None:
    replies = {}
    for persona in ("butler", "robot"):
        out = tmp_path / f"{persona}.wav"
        result = await asyncio.to_thread(
            talk, suite, personas_dir, state_dir, "--in", str(question_wav), "--out", str(out),
            "--persona", persona,
        )  # fmt: skip
        assert normalize(result["transcript"]) == normalize(QUESTION)
        assert result["reply"].strip(), "the persona must answer"
        assert result["context"]["persona_id"] == persona, "the reply must come from the chosen persona"
        assert result["streaming"] is True
        latency = result["latency_s"]
        assert set(latency) == {"transcript", "first_reply_text", "first_reply_audio", "total"}
        assert all(value is not None and value > 0 for value in latency.values()), latency
        assert latency["first_reply_audio"] <= latency["total"]
        samples, rate = read_wav(out)
        assert len(samples) / rate == pytest.approx(result["reply_audio"]["seconds"], abs=0.01)
        assert len(samples) / rate > 0.5, "the reply must be audible speech"
        replies[persona] = median_f0(samples, rate)

    # The butler speaks 3 semitones down, the robot 3 up: 2**(6/12) = 1.41 apart.
    ratio = replies["robot"] / replies["butler"]
    assert 1.2 < ratio < 1.65, replies
