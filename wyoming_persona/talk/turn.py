"""One voice turn as a satellite would drive it: stream audio to ASR, the transcript to the persona
service, its streamed reply into TTS streaming, and time each step from the end of speech."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.handle import Handled, HandledChunk, NotHandled
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from .audio_clip import AudioClip, speech_end_seconds

CHUNK_SECONDS = 0.064


class TurnError(Exception):
    """A service answered with an error or not at all."""


@dataclass(frozen=True)
class Endpoints:
    asr: str
    persona: str
    tts: str
    timeout: float = 60.0
    """Longest wait for any one answer."""


@dataclass
class TurnTimings:
    """Seconds from the end of speech; None when the step never happened."""

    transcript: float | None = None
    first_reply_text: float | None = None
    first_reply_audio: float | None = None
    total: float | None = None


@dataclass
class TurnResult:
    transcript: str
    reply: str
    audio: AudioClip | None
    timings: TurnTimings
    context: dict = field(default_factory=dict)


OnAudio = Callable[[AudioChunk], None]


async def _next(client: AsyncClient, seconds: float, what: str) -> Event:
    try:
        async with asyncio.timeout(seconds):
            event = await client.read_event()
    except TimeoutError as err:
        raise TurnError(f"{what}: no answer within {seconds:.0f} s") from err
    if event is None:
        raise TurnError(f"{what}: the service closed the connection")
    if Error.is_type(event.type):
        raise TurnError(f"{what}: {Error.from_event(event).text}")
    return event


def _connect(uri: str, seconds: float) -> AsyncClient:
    return AsyncClient.from_uri(uri, connect_timeout=seconds)


async def transcribe(
    clip: AudioClip, endpoints: Endpoints, language: str | None, realtime: bool
) -> tuple[str, float, float]:
    """Stream 16 kHz audio to ASR. Returns (text, end-of-speech time, transcript time) on the
    perf_counter clock; with `realtime`, audio is paced like a live microphone."""
    clip = clip.to_asr_format()
    eos_offset = speech_end_seconds(clip)
    chunk_bytes = int(CHUNK_SECONDS * clip.rate) * clip.width
    audio_format = {"rate": clip.rate, "width": clip.width, "channels": clip.channels}
    async with _connect(endpoints.asr, endpoints.timeout) as client:
        await client.write_event(Transcribe(language=language).event())
        start = time.perf_counter()
        await client.write_event(AudioStart(**audio_format, timestamp=0).event())

        async def send_audio() -> float:
            for index, offset in enumerate(range(0, len(clip.pcm), chunk_bytes)):
                if realtime:
                    await asyncio.sleep(max(0.0, start + index * CHUNK_SECONDS - time.perf_counter()))
                chunk = AudioChunk(**audio_format, audio=clip.pcm[offset : offset + chunk_bytes])
                await client.write_event(chunk.event())
            await client.write_event(AudioStop().event())
            return time.perf_counter()

        sender = asyncio.create_task(send_audio())
        try:
            while not Transcript.is_type((event := await _next(client, endpoints.timeout, "asr")).type):
                pass
            heard = time.perf_counter()
            # A server that finds the end of speech itself may answer before audio-stop; a live
            # microphone would stop streaming then, so only the as-fast-as-possible mode waits.
            end_of_speech = start + eos_offset if realtime else await sender
        finally:
            sender.cancel()
    return Transcript.from_event(event).text, end_of_speech, heard


class _AudioSink:
    """Collects the reply audio and notes when its first chunk arrived."""

    def __init__(self, on_audio: OnAudio | None) -> None:
        self.on_audio = on_audio
        self.pcm = bytearray()
        self.format: dict | None = None
        self.first_audio: float | None = None

    def take(self, event: Event) -> None:
        chunk = AudioChunk.from_event(event)
        if self.format is None:
            self.format = {"rate": chunk.rate, "width": chunk.width, "channels": chunk.channels}
            self.first_audio = time.perf_counter()
        self.pcm.extend(chunk.audio)
        if self.on_audio is not None:
            self.on_audio(chunk)

    def clip(self) -> AudioClip | None:
        return AudioClip(bytes(self.pcm), **self.format) if self.format else None


@dataclass
class _Reply:
    text: str = ""
    context: dict = field(default_factory=dict)
    first_text: float | None = None


def _is_answer(event: Event) -> bool:
    return Handled.is_type(event.type) or NotHandled.is_type(event.type)


def _answer(event: Event, reply: _Reply) -> None:
    parsed = Handled.from_event(event) if Handled.is_type(event.type) else NotHandled.from_event(event)
    reply.text, reply.context = parsed.text or "", parsed.context or {}
    reply.first_text = reply.first_text or time.perf_counter()


async def _reply_streaming(
    persona: AsyncClient, endpoints: Endpoints, voice: SynthesizeVoice | None, sink: _AudioSink
) -> _Reply:
    """Each handled-chunk goes to TTS as a synthesize-chunk the moment it arrives."""
    reply = _Reply()
    async with _connect(endpoints.tts, endpoints.timeout) as tts:
        await tts.write_event(SynthesizeStart(voice=voice).event())

        async def read_audio() -> None:
            while not SynthesizeStopped.is_type((event := await _next(tts, endpoints.timeout, "tts")).type):
                if AudioChunk.is_type(event.type):
                    sink.take(event)

        reader = asyncio.create_task(read_audio())
        try:
            spoken = False
            while not _is_answer(event := await _next(persona, endpoints.timeout, "persona")):
                if HandledChunk.is_type(event.type) and (piece := HandledChunk.from_event(event).text):
                    reply.first_text = reply.first_text or time.perf_counter()
                    await tts.write_event(SynthesizeChunk(text=piece).event())
                    spoken = True
            _answer(event, reply)
            if not spoken and reply.text:
                await tts.write_event(SynthesizeChunk(text=reply.text).event())
            # The compat event for servers that do not stream; a streaming server must not speak it.
            await tts.write_event(Synthesize(text=reply.text, voice=voice).event())
            await tts.write_event(SynthesizeStop().event())
            await reader
        finally:
            reader.cancel()
    return reply


async def _reply_whole(
    persona: AsyncClient, endpoints: Endpoints, voice: SynthesizeVoice | None, sink: _AudioSink
) -> _Reply:
    """The non-streaming path: wait for the whole reply, then synthesize it in one request."""
    reply = _Reply()
    while not _is_answer(event := await _next(persona, endpoints.timeout, "persona")):
        pass
    _answer(event, reply)
    async with _connect(endpoints.tts, endpoints.timeout) as tts:
        await tts.write_event(Synthesize(text=reply.text, voice=voice).event())
        while not AudioStop.is_type((event := await _next(tts, endpoints.timeout, "tts")).type):
            if AudioChunk.is_type(event.type):
                sink.take(event)
    return reply


async def run_turn(
    question: AudioClip,
    endpoints: Endpoints,
    *,
    language: str | None = "en",
    conversation_id: str | None = None,
    voice: str | None = None,
    streaming: bool = True,
    realtime: bool = True,
    on_audio: OnAudio | None = None,
) -> TurnResult:
    transcript, end_of_speech, heard = await transcribe(question, endpoints, language, realtime)
    context: dict = {"conversation_id": conversation_id} if conversation_id else {}
    if streaming:  # the chunks go to TTS here: the persona service need not speak a reply ahead
        context["speaks_chunks"] = True
    sink = _AudioSink(on_audio)
    synth_voice = SynthesizeVoice(name=voice) if voice else None
    async with _connect(endpoints.persona, endpoints.timeout) as persona:
        await persona.write_event(
            Transcript(text=transcript, language=language, context=context or None).event()
        )
        speak = _reply_streaming if streaming else _reply_whole
        reply = await speak(persona, endpoints, synth_voice, sink)
    done = time.perf_counter()

    def since_eos(moment: float | None) -> float | None:
        return None if moment is None else moment - end_of_speech

    timings = TurnTimings(
        since_eos(heard), since_eos(reply.first_text), since_eos(sink.first_audio), since_eos(done)
    )
    return TurnResult(transcript, reply.text, sink.clip(), timings, reply.context)


async def synthesize_question(text: str, endpoints: Endpoints, voice: str | None) -> AudioClip:
    """Speak a text question with the TTS service so the turn stays voice to voice."""
    sink = _AudioSink(None)
    async with _connect(endpoints.tts, endpoints.timeout) as tts:
        synth_voice = SynthesizeVoice(name=voice) if voice else None
        await tts.write_event(Synthesize(text=text, voice=synth_voice).event())
        while not AudioStop.is_type((event := await _next(tts, endpoints.timeout, "tts")).type):
            if AudioChunk.is_type(event.type):
                sink.take(event)
    clip = sink.clip()
    if clip is None:
        raise TurnError("tts: no audio for the question")
    return clip
