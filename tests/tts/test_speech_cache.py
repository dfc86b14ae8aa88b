"""The speech cache on the wire: a reply spoken ahead (its text streamed in as an LLM writes it) is
replayed byte for byte when Home Assistant asks for the same text in the same voice.

The engine here keeps Piper's own noise (as the service does), so two syntheses of one text differ:
identical audio can only come from the cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest

from tts.conftest import Client, cached_worker
from wyoming_persona.personas.manager import PersonaManager
from wyoming_persona.tts.engine import TtsEngine
from wyoming_persona.tts.handler import TtsEventHandler
from wyoming_persona.tts.pool import VoicePool
from wyoming_persona.tts.speech_cache import SpeechCache
from wyoming_persona.tts.voices import VoiceCatalog
from wyoming_persona.wyoming_server import ServiceServer

MARK = "\u200b\u200c\u200b\u200b"
REPLY = "Sure, the moon is about three hundred and eighty thousand kilometres away. Quite far!"
PIECES = [
    "Sure,",
    " the moon is about",
    " three hundred and eighty thousand",
    " kilometres away.",
    " Quite far!",
]


async def start(personas: Path, state: Path, voices: Path, cache: SpeechCache | None) -> ServiceServer:
    engine = TtsEngine(
        VoiceCatalog([voices]),
        PersonaManager(personas, state, "plain"),
        VoicePool(4, worker_factory=cached_worker),
        speech_cache=cache,
    )
    server = ServiceServer("tcp://127.0.0.1:0", partial(TtsEventHandler, engine=engine))
    await server.start()
    return server


@pytest.fixture
async def cached(tts_personas, state_dir, voices_dir) -> AsyncIterator[tuple[ServiceServer, SpeechCache]]:
    cache = SpeechCache()
    server = await start(tts_personas, state_dir, voices_dir, cache)
    yield server, cache
    await server.close()


async def streamed(
    port: int, chunks: list[str], voice: str | None, wait: asyncio.Event | None = None
) -> bytes:
    """A streamed request: the chunks, the compat synthesize, synthesize-stop; the PCM back. Home
    Assistant 2026.2 sends its whole text in one chunk; our persona service sends the chunks as the LLM
    writes them. `wait`: hold the synthesize-stop until it is set."""
    client = await Client.connect(port)
    try:
        voice_data = {"voice": {"name": voice}} if voice else {}
        await client.send("synthesize-start", **voice_data)
        for chunk in chunks:
            await client.send("synthesize-chunk", text=chunk)
        await client.send("synthesize", text="".join(chunks), **voice_data)
        if wait is not None:
            await wait.wait()
        await client.send("synthesize-stop")
        events = await client.read_until("synthesize-stopped")
    finally:
        await client.close()
    assert events[-1].type == "synthesize-stopped", events[-1].data
    return b"".join(e.payload or b"" for e in events if e.type == "audio-chunk")


async def whole(port: int, text: str, voice: str | None) -> bytes:
    """The non-streaming request (Home Assistant with a TTS that does not stream)."""
    client = await Client.connect(port)
    try:
        await client.send("synthesize", text=text, **({"voice": {"name": voice}} if voice else {}))
        events = await client.read_until("audio-stop")
    finally:
        await client.close()
    assert events[-1].type == "audio-stop", events[-1].data
    return b"".join(e.payload or b"" for e in events if e.type == "audio-chunk")


async def test_without_the_cache_two_syntheses_of_a_text_differ(tts_personas, state_dir, voices_dir) -> None:
    """Piper's noise: what the identical audio below proves comes from the cache."""
    server = await start(tts_personas, state_dir, voices_dir, None)
    try:
        first = await streamed(server.port, [REPLY], "plain")
        second = await streamed(server.port, [REPLY], "plain")
    finally:
        await server.close()
    assert first and second and first != second


async def test_a_reply_spoken_ahead_is_replayed_byte_identical_in_both_ways_home_assistant_asks(cached):
    server, cache = cached
    ahead = await streamed(server.port, [MARK + PIECES[0], *PIECES[1:]], "plain")  # the persona's id
    assert cache.hits == 0
    assert await streamed(server.port, [MARK + REPLY], "active") == ahead  # the pipeline's voice `active`
    assert await streamed(server.port, [MARK + REPLY], None) == ahead  # no voice: the active persona too
    assert await whole(server.port, MARK + REPLY, "plain") == ahead  # the non-streaming synthesize
    assert cache.hits == 3


async def test_other_words_or_another_voice_are_synthesized(cached) -> None:
    server, cache = cached
    ahead = await streamed(server.port, PIECES, "plain")
    other_voice = await streamed(server.port, [REPLY], "quick")  # same model, another speed
    other_words = await streamed(server.port, [REPLY.replace("three", "four")], "plain")
    longer = await streamed(server.port, [REPLY, " And back."], "plain")  # more after the same words
    assert len({ahead, other_voice, other_words, longer}) == 4 and cache.hits == 0
    assert len(longer) > len(ahead)


async def test_a_request_during_the_speech_ahead_follows_it(cached) -> None:
    """Home Assistant asks while the reply is still being spoken ahead: it gets the same audio, and
    nothing is synthesized twice."""
    server, cache = cached
    worker = cached_worker(next(iter(VoiceCatalog([]).voices().values())))
    text_sent = asyncio.Event()
    async with asyncio.timeout(60):
        ahead = asyncio.create_task(streamed(server.port, PIECES, "plain", text_sent))
        while worker.pieces == 0:  # noqa: ASYNC110 - the worker's own count
            await asyncio.sleep(0.01)
        text_sent.set()
        await asyncio.sleep(0)  # the stop goes out before Home Assistant's request
        asked = await streamed(server.port, [REPLY], "active")
        assert asked == await ahead
    assert cache.hits == 1
    pieces = worker.pieces
    await streamed(server.port, [REPLY.replace("Quite", "Very")], "plain")
    assert worker.pieces > pieces  # (the count does move when something is synthesized)


async def test_the_cache_keeps_to_its_size(tts_personas, state_dir, voices_dir) -> None:
    cache = SpeechCache(max_bytes=200_000)  # about 4.5 s of 22 kHz speech
    server = await start(tts_personas, state_dir, voices_dir, cache)
    try:
        for number in ("one", "two", "three", "four", "five"):
            text = f"This is sentence number {number}, and it is not short at all."
            await streamed(server.port, [text], None)
            assert cache.size <= cache.max_bytes
        await streamed(server.port, ["This is sentence number five, and it is not short at all."], None)
        assert cache.hits == 1  # the newest stayed
        await streamed(server.port, ["This is sentence number one, and it is not short at all."], None)
        assert cache.hits == 1  # the oldest went
    finally:
        await server.close()


async def test_a_response_cut_off_midway_is_not_replayed(cached) -> None:
    server, cache = cached
    client = await Client.connect(server.port)
    await client.send("synthesize", text=REPLY)
    events = await client.read_until("audio-chunk")
    assert events[-1].type == "audio-chunk"
    await client.close()
    first = await whole(server.port, REPLY, None)
    assert cache.hits == 0 and first == await whole(server.port, REPLY, None)
    assert cache.hits == 1
