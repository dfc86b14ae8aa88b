"""The TTS server on loopback TCP with the real joe voice."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest
from wyoming.info import Info

from wyoming_persona.personas.manager import PersonaManager
from wyoming_persona.tts.handler import ResponseSettings
from wyoming_persona.tts.pool import VoicePool
from wyoming_persona.tts.voices import VoiceCatalog, VoiceFile
from wyoming_persona.tts.worker import PiperWorker, VoiceSettings

from .conftest import (
    COPY,
    JOE,
    PERSONAS,
    Client,
    Service,
    audio_of,
    cached_worker,
    median_f0,
    speak,
    start_service,
)

TEXT = "The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore."
TOLERANCE = 0.15


async def test_info_lists_personas_and_plain_voices(service: Service, client: Client) -> None:
    await client.send("describe")
    event = await client.read()
    assert event is not None and event.type == "info"
    (program,) = Info.from_event(event).tts
    assert program.supports_synthesize_streaming
    voices = {voice.name: voice for voice in program.voices}
    assert next(iter(voices)) == "active", "HA shows this first: the voice that follows persona switches"
    assert voices["active"].languages == ["en_US"]
    assert list(voices)[1 : len(PERSONAS) + 1] == sorted(PERSONAS)
    assert voices["deep"].description == f"Deep Persona ({JOE})"
    assert voices["other"].description == f"Other Persona ({COPY})"
    assert voices["deep"].languages == ["en_US"]
    assert {JOE, COPY} <= set(voices)

    # Personas are hot-reloaded: a new file shows up on the next describe.
    (service.manager.personas_dir / "extra.yaml").write_text(
        "name: Extra\nprompt:\n  identity: x\n", encoding="utf-8"
    )
    service.manager.reload()
    await client.send("describe")
    event = await client.read()
    assert event is not None
    assert "extra" in {voice.name for voice in Info.from_event(event).tts[0].voices}


async def test_persona_pitch_and_speed_are_measurable(client: Client) -> None:
    plain, rate, _ = await speak(client, TEXT, JOE)
    deep, _, _ = await speak(client, TEXT, "deep")
    quick, _, _ = await speak(client, TEXT, "quick")
    plain_persona, _, _ = await speak(client, TEXT, "plain")

    assert np.array_equal(plain, plain_persona), "a neutral persona sounds exactly like its plain voice"
    f0_plain = median_f0(plain, rate)

    want_pitch = 2 ** (PERSONAS["deep"][1] / 12)
    assert abs(median_f0(deep, rate) / f0_plain / want_pitch - 1) < TOLERANCE
    assert abs(len(deep) / len(plain) - 1) < TOLERANCE

    want_duration = 1 / PERSONAS["quick"][0]
    assert abs(len(quick) / len(plain) / want_duration - 1) < TOLERANCE
    assert abs(median_f0(quick, rate) / f0_plain - 1) < TOLERANCE


async def test_no_voice_follows_the_active_persona(service: Service, client: Client, state_dir: Path) -> None:
    text = "Hello there, how are you today?"
    plain, _, _ = await speak(client, text, "plain")
    deep, _, _ = await speak(client, text, "deep")
    assert not np.array_equal(plain, deep)

    active, _, _ = await speak(client, text)
    assert np.array_equal(active, plain)  # default persona

    # Another process switches the persona through the shared state folder.
    PersonaManager(service.manager.personas_dir, state_dir, "plain").set_active("deep")
    service.manager.refresh()  # what the service's background watcher does
    active, _, _ = await speak(client, text)
    assert np.array_equal(active, deep)
    named_active, _, _ = await speak(client, text, "active")
    assert np.array_equal(named_active, deep), "the 'active' voice follows the switch too"


async def test_streaming_order_format_and_no_double_speech(client: Client) -> None:
    text = "First sentence is here. Second one follows, with a clause. And a third!"
    whole, _, _ = await speak(client, text, "deep")

    await client.send("synthesize-start", voice={"name": "deep"})
    await client.send("synthesize-chunk", text="First sentence is here. Sec")
    # The first sentence is spoken before the stream ends.
    first = await client.read_until("audio-stop")
    assert first[0].type == "audio-start" and first[-1].type == "audio-stop"
    await client.send("synthesize-chunk", text="ond one follows, with a clause. And a ")
    await client.send("synthesize-chunk", text="third!")
    await client.send("synthesize", text=text, voice={"name": "deep"})  # compat copy: never spoken
    await client.send("synthesize-stop")
    events = first + await client.read_until("synthesize-stopped")

    types = [e.type for e in events]
    assert types[-1] == "synthesize-stopped"
    assert "error" not in types
    blocks = []
    for event in events[:-1]:
        if event.type == "audio-start":
            blocks.append([])
        assert event.type in ("audio-start", "audio-chunk", "audio-stop")
        blocks[-1].append(event.type)
    assert len(blocks) == 3
    assert all(b[0] == "audio-start" and b[-1] == "audio-stop" and "audio-chunk" in b for b in blocks)
    formats = {
        (e.data["rate"], e.data["width"], e.data["channels"])
        for e in events
        if e.type in ("audio-start", "audio-chunk")
    }
    assert formats == {(22050, 2, 1)}

    streamed, _, _ = audio_of(events)
    assert abs(len(streamed) / len(whole) - 1) < 0.1, "compat synthesize must not be spoken again"


async def test_non_streaming_sends_one_audio_block(client: Client) -> None:
    _, _, events = await speak(client, "One. Two is here. Three, at last.", JOE)
    types = [e.type for e in events]
    assert types[0] == "audio-start" and types[-1] == "audio-stop"
    assert types.count("audio-start") == 1 and types.count("audio-stop") == 1


async def test_long_text_is_spoken_whole(client: Client) -> None:
    sentences = [f"This is sentence number {i}, which is spoken in full." for i in range(100)]
    text = " ".join(sentences)
    text = text[: text.rfind(".", 0, 5000) + 1]
    count = text.count(".")
    assert 4500 < len(text) <= 5000
    await client.send("synthesize-start", voice={"name": JOE})
    await client.send("synthesize-chunk", text=text)
    await client.send("synthesize-stop")
    events = await client.read_until("synthesize-stopped")
    # One audio block per sentence: sent whole, the first sentence's first clause is one of its
    # pieces, not a block of its own.
    assert [e.type for e in events].count("audio-start") == count
    samples, rate, _ = audio_of(events)
    assert len(samples) / rate > count * 2.0  # every sentence is at least two seconds long


async def test_pool_shares_models_and_never_reloads_when_alternating(
    tts_personas: Path, state_dir: Path, voices_dir: Path
) -> None:
    pool = VoicePool(2, worker_factory=cached_worker)
    svc = await start_service(tts_personas, state_dir, voices_dir, pool=pool)
    client = await Client.connect(svc.port)
    try:
        for _ in range(3):
            for voice in ("deep", "quick", "other", JOE, COPY):
                await speak(client, "Hi.", voice)
        assert pool.loads == 2  # deep, quick and joe share one model; other and the copy share another
        assert sorted(pool.loaded()) == sorted([JOE, COPY])

        # A third model evicts the least recently used one (LRU), which then loads again.
        extra = voices_dir / "en_US-third-medium.onnx"
        extra.symlink_to(voices_dir / f"{COPY}.onnx")
        (voices_dir / "en_US-third-medium.onnx.json").symlink_to(voices_dir / f"{COPY}.onnx.json")
        await speak(client, "Hi.", "en_US-third-medium")
        assert pool.loads == 3 and pool.evictions == 1
        await speak(client, "Hi.", JOE)  # joe was least recently used
        assert pool.loads == 4
    finally:
        await client.close()
        await svc.server.close()


async def test_a_request_gone_mid_load_leaves_the_voice_loaded_for_the_next(voices_dir: Path) -> None:
    """A client that drops while its voice loads (or a speech-ahead a real turn stopped) does not
    throw the load away: the next request finds the voice loaded, and it was loaded once."""
    made: list[PiperWorker] = []

    def fresh_worker(voice: VoiceFile) -> PiperWorker:  # this test owns its loads
        made.append(PiperWorker(voice))
        return made[-1]

    pool = VoicePool(2, worker_factory=fresh_worker)
    voice = VoiceCatalog([voices_dir]).resolve(COPY)
    try:
        gone = asyncio.create_task(pool.get(voice))
        await asyncio.sleep(0.05)  # the load has begun on the worker thread
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
        assert gone.cancelled()
        async with asyncio.timeout(120):
            worker = await pool.get(voice)
        assert len(made) == 1 and pool.loads == 1 and pool.loaded() == [COPY]
        spoken = await worker.synthesize("Hi.", VoiceSettings(), threading.Event())
        assert len(spoken) > 0
    finally:
        pool.close()


async def test_describe_answers_while_another_client_is_served(service: Service) -> None:
    busy = await Client.connect(service.port)
    other = await Client.connect(service.port)
    try:
        text = " ".join(f"Sentence number {i} keeps the voice busy for a while." for i in range(30))
        await busy.send("synthesize", text=text, voice={"name": JOE})
        first = await busy.read()
        assert first is not None and first.type == "audio-start"
        await other.send("describe")
        info = await other.read()
        assert info is not None and info.type == "info"
        # The busy client has not got all its audio yet.
        rest = await busy.read_until("audio-stop")
        assert len(rest) > 10
    finally:
        await busy.close()
        await other.close()


async def test_disconnect_stops_synthesis(service: Service) -> None:
    client = await Client.connect(service.port)
    text = " ".join(f"Sentence number {i} should never be spoken to the end." for i in range(60))
    await client.send("synthesize", text=text, voice={"name": JOE})
    first = await client.read()
    assert first is not None and first.type == "audio-start"
    await client.close()
    worker = await service.engine.pool.get(service.engine.resolve(JOE).voice)
    handlers = set(service.server._tasks)  # the connection's handler task
    assert handlers
    async with asyncio.timeout(60):
        await asyncio.wait(handlers)
    spoken = worker.pieces
    await asyncio.sleep(0.5)
    assert worker.pieces == spoken < 60


@pytest.mark.parametrize(
    ("events", "code"),
    [
        ([("synthesize", {"text": ""})], "empty-text"),
        ([("synthesize", {"text": "!!! 😀 ... 🎉"})], "empty-text"),
        ([("synthesize", {"text": "Hi.", "voice": {"name": "nobody"}})], "unknown-voice"),
        ([("synthesize", {"text": "Hi.", "voice": "deep"})], "bad-request"),
        ([("synthesize", {})], "bad-request"),
        ([("synthesize-chunk", {"text": "Hi."})], "bad-order"),
        ([("synthesize-stop", {})], "bad-order"),
        ([("synthesize-start", {"voice": {"name": "nobody"}})], "unknown-voice"),
        (
            [("synthesize-start", {}), ("synthesize-chunk", {"text": "😀"}), ("synthesize-stop", {})],
            "empty-text",
        ),
        ([("synthesize", {"text": "word " * 2000})], "too-long"),
        ([("transcribe", {})], "unexpected"),
    ],
)
async def test_bad_input_gets_an_error_and_the_connection_keeps_working(
    client: Client, events: list, code: str
) -> None:
    for event_type, data in events:
        await client.send(event_type, **data)
    reply = await client.read_until("never")
    assert reply[-1].type == "error" and reply[-1].data["code"] == code, reply[-1].data
    if code == "unknown-voice":
        assert "deep" in reply[-1].data["text"] and JOE in reply[-1].data["text"]
    await speak(client, "Still here.", JOE)


async def test_huge_stream_is_refused_once_and_the_rest_ignored(client: Client) -> None:
    await client.send("synthesize-start", voice={"name": JOE})
    await client.send("synthesize-chunk", text="Hello. " + "word " * 2000)
    reply = await client.read_until("never")
    assert reply[-1].type == "error" and reply[-1].data["code"] == "too-long"
    await client.send("synthesize-chunk", text="more words")
    await client.send("synthesize-stop")
    await speak(client, "Still here.", JOE)
    # A refused stream does not block the next one, even without its stop.
    await client.send("synthesize-start", voice={"name": JOE})
    await client.send("synthesize-chunk", text="word " * 2000)
    assert (await client.read_until("never"))[-1].data["code"] == "too-long"
    await client.send("synthesize-start", voice={"name": JOE})
    await client.send("synthesize-chunk", text="Back again.")
    await client.send("synthesize-stop")
    events = await client.read_until("synthesize-stopped")
    assert events[-1].type == "synthesize-stopped"


async def test_garbage_frame_closes_only_that_connection(service: Service) -> None:
    bad = await Client.connect(service.port)
    bad.writer.write(b"this is not a wyoming header\n")
    await bad.writer.drain()
    reply = await bad.read()
    assert reply is not None and reply.type == "error"
    assert await bad.read() is None
    await bad.close()
    good = await Client.connect(service.port)
    await speak(good, "Still serving.", JOE)
    await good.close()


async def test_first_clause_split_can_be_turned_off(
    tts_personas: Path, state_dir: Path, voices_dir: Path
) -> None:
    svc = await start_service(
        tts_personas, state_dir, voices_dir, settings=ResponseSettings(split_first_clause=False)
    )
    client = await Client.connect(svc.port)
    try:
        samples, _, _ = await speak(client, "Sure, the lights in the kitchen are on now.", JOE)
        assert len(samples) > 0
    finally:
        await client.close()
        await svc.server.close()


def longest_inner_silence(samples: np.ndarray, rate: int) -> float:
    """Seconds of the longest quiet stretch between the first and the last loud 10 ms window."""
    window = rate // 100
    count = len(samples) // window
    rms = np.sqrt(np.mean(samples[: count * window].astype(np.float64).reshape(count, window) ** 2, axis=1))
    loud = np.flatnonzero(rms > 0.03 * rms.max())
    longest = run = 0
    for is_loud in rms[loud[0] : loud[-1] + 1] > 0.03 * rms.max():
        run = 0 if is_loud else run + 1
        longest = max(longest, run)
    return longest * window / rate


async def test_first_clause_split_does_not_stall_mid_sentence(
    tts_personas: Path, state_dir: Path, voices_dir: Path, client: Client
) -> None:
    """Two Piper calls for one sentence would each add a sentence-end pause; the join must stay short."""
    text = "Tell me a fun fact about the ocean and the whales."
    split, rate, _ = await speak(client, text, JOE)
    whole_service = await start_service(
        tts_personas, state_dir, voices_dir, settings=ResponseSettings(split_first_clause=False)
    )
    whole_client = await Client.connect(whole_service.port)
    try:
        whole, _, _ = await speak(whole_client, text, JOE)
    finally:
        await whole_client.close()
        await whole_service.server.close()
    assert longest_inner_silence(split, rate) < 0.2
    assert len(split) / len(whole) < 1.2, "the split may add a comma pause, not a sentence break"


async def test_the_persona_mark_is_not_heard(client: Client) -> None:
    """The agent puts invisible characters per persona before a reply (HA's TTS cache key); the voice
    must say exactly what it says without them."""
    from wyoming_persona.speakable import persona_mark

    plain, _, _ = await speak(client, "Aye, the kitchen light is on.", JOE)
    marked, _, _ = await speak(client, persona_mark("pirate") + "Aye, the kitchen light is on.", JOE)
    assert persona_mark("pirate") != persona_mark("butler")
    assert np.array_equal(plain, marked)
