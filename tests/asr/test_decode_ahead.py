"""The early decode starts before the VAD confirms the end of speech, and its words go on the
speculation link; speech that goes on drops it and takes the words back (real Whisper, Silero, Piper)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from functools import partial

import pytest
from vad.helpers import connect, normalize, running, without_trailing_quiet
from wyoming.asr import Transcribe
from wyoming.event import Event

from wyoming_persona.asr.handler import AsrEventHandler, AsrSettings
from wyoming_persona.asr.info import asr_info
from wyoming_persona.audio import AudioStop, silence
from wyoming_persona.speculate import Speculate, SpeculationLink
from wyoming_persona.wyoming_server import FrameLimits, ServiceServer, WyomingService

WAIT = 60.0
FIRST, SECOND = "Turn on the kitchen light.", "And open the garage door."


class Heard(WyomingService):
    """A stand-in for the persona service's side of the link: notes each speculate event."""

    texts: list[str]
    partial: list[str]

    async def handle_event(self, event: Event) -> bool:
        heard = Speculate.from_event(event)
        (self.partial if heard.partial else self.texts).append(heard.text)
        return True


@pytest.fixture
async def heard() -> AsyncIterator[tuple[ServiceServer, list[str], list[str]]]:
    texts: list[str] = []
    partial: list[str] = []

    def factory(reader, writer):
        handler = Heard(reader, writer, info=lambda: None)
        handler.texts, handler.partial = texts, partial
        return handler

    async with running(ServiceServer("tcp://127.0.0.1:0", factory)) as server:
        yield server, texts, partial


@pytest.fixture
async def asr(transcriber, silero, heard) -> AsyncIterator[tuple[ServiceServer, SpeculationLink]]:
    link = SpeculationLink(f"tcp://127.0.0.1:{heard[0].port}")
    factory = partial(
        AsrEventHandler,
        info=lambda: asr_info(transcriber),
        limits=FrameLimits(),
        transcriber=transcriber,
        vad_model=silero,
        settings=AsrSettings(),
        link=link,
    )
    async with running(ServiceServer("tcp://127.0.0.1:0", factory)) as server:
        yield server, link
    await link.close()


async def until(condition) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 - polling what the servers' tasks change
            await asyncio.sleep(0.02)


async def test_the_decode_starts_before_the_end_of_speech_is_confirmed(
    asr, heard, speech, model_runs, caplog
):
    caplog.set_level(logging.DEBUG, logger="wyoming_persona.asr")
    server, _ = asr
    async with connect(server) as client:
        await client.send(Transcribe(language="en").event())
        await client.send_audio(silence(0.3) + speech.say(FIRST) + silence(0.12), stop=False)
        await until(lambda: model_runs)  # decoded while the VAD still waits for its 200 ms of silence
        assert "(not yet confirmed)" in caplog.text
        await until(lambda: heard[1])
        assert normalize(heard[1][0]) == "turn on the kitchen light"
        await client.send_audio(silence(0.6), start=False)
        events = await client.receive_until("transcript")
    assert normalize(events[-1].data["text"]) == "turn on the kitchen light"
    assert len(model_runs) == 1  # the decode made ahead is the transcript


async def test_speech_that_goes_on_drops_the_decode_and_takes_its_words_back(asr, heard, speech, model_runs):
    server, _ = asr
    async with connect(server) as client:
        await client.send(Transcribe(language="en").event())
        await client.send_audio(silence(0.3) + speech.say(FIRST) + silence(0.12), stop=False)
        await until(lambda: heard[1])  # the first words went on the link
        await client.send_audio(speech.say(SECOND) + silence(0.8), start=False, stop=False)
        await until(lambda: len(heard[1]) >= 3)
        await client.send(AudioStop().event())
        events = await client.receive_until("transcript")
    both = "turn on the kitchen light and open the garage door"
    assert normalize(events[-1].data["text"]) == both
    first, taken_back, final = heard[1][:3]
    assert (normalize(first), taken_back, normalize(final)) == ("turn on the kitchen light", "", both)


async def test_words_so_far_go_on_the_link_while_the_user_still_speaks(asr, heard, speech) -> None:
    server, _ = asr
    long = "Could you tell me how many kilometres it is from Paris to Rome by train?"
    async with connect(server) as client:
        await client.send(Transcribe(language="en").event())
        speaking = silence(0.3) + without_trailing_quiet(speech.say(long))
        await client.send_audio(speaking, stop=False)  # no silence after it yet
        await until(lambda: heard[2])
        assert not heard[1]  # nothing final: the user has not stopped
        await client.send_audio(silence(0.8), start=False, stop=False)
        await until(lambda: heard[1])  # the whole words, once the user stopped
        await client.send(AudioStop().event())
        events = await client.receive_until("transcript")
    final = normalize(events[-1].data["text"])
    assert final.startswith(normalize(heard[2][0])[:8])  # the first words, as the question begins
    assert normalize(heard[1][-1]) == final


async def test_words_decoded_after_the_turn_ended_still_go_on_the_link(
    transcriber, silero, heard, speech, worker_gate
) -> None:
    """The ASR ended the turn itself (endpointing) before Whisper was free to decode it: the words go on
    the link with the transcript (before, nothing was posted and the reply started only when asked)."""
    link = SpeculationLink(f"tcp://127.0.0.1:{heard[0].port}")
    factory = partial(
        AsrEventHandler,
        info=lambda: asr_info(transcriber, endpointing=True),
        limits=FrameLimits(),
        transcriber=transcriber,
        vad_model=silero,
        settings=AsrSettings(endpoint_ms=300),
        link=link,
    )
    async with running(ServiceServer("tcp://127.0.0.1:0", factory)) as server, connect(server) as client:
        await client.send(Transcribe(language="en").event())
        await client.send_audio(silence(0.3) + speech.say(FIRST) + silence(0.8), stop=False)
        worker_gate.set()  # Whisper is free only now, after the endpoint
        events = await client.receive_until("transcript")
        await until(lambda: heard[1])
    await link.close()
    assert normalize(events[-1].data["text"]) == normalize(heard[1][-1]) == "turn on the kitchen light"
