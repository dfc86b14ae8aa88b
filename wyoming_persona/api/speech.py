"""The studio's two Wyoming calls: a preview (unsaved voice settings -> WAV, through the TTS service) and
a trial turn (a message to the persona service as one persona, its reply streamed into the TTS)."""

from __future__ import annotations

import asyncio
import io
import time
import wave
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wyoming.asr import Transcript
from wyoming.audio import AudioChunk, AudioStop
from wyoming.client import AsyncClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.handle import Handled, HandledChunk, NotHandled
from wyoming.intent import Intent
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

INLINE_VOICE = "persona_voice"
"""The TTS's key for voice settings given inline (tts/engine.py)."""
ANSWER_AS = "answer_as"
"""The persona service's context key for the persona that answers one turn (agent/handler.py)."""
MARK_CHARS = "\u200b\u200c"
"""The persona mark's characters (speakable.persona_mark), removed from text shown to the user."""


class SpeechError(Exception):
    """A service that did not answer, or answered with an error; the message says which and why."""


@dataclass
class Audio:
    """PCM collected from audio-chunk events, and when the first one came."""

    pcm: bytearray = field(default_factory=bytearray)
    rate: int = 0
    width: int = 2
    channels: int = 1
    first: float | None = None

    def take(self, event: Event) -> None:
        chunk = AudioChunk.from_event(event)
        if not self.rate:
            self.rate, self.width, self.channels = chunk.rate, chunk.width, chunk.channels
        if self.first is None:
            self.first = time.perf_counter()
        self.pcm.extend(chunk.audio)

    def wav(self) -> bytes | None:
        if not self.rate or not self.pcm:
            return None
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as out:
            out.setframerate(self.rate)
            out.setsampwidth(self.width)
            out.setnchannels(self.channels)
            out.writeframes(bytes(self.pcm))
        return buffer.getvalue()


async def _next(client: AsyncClient, seconds: float, what: str) -> Event:
    try:
        async with asyncio.timeout(seconds):
            event = await client.read_event()
    except TimeoutError:
        raise SpeechError(f"{what} did not answer within {seconds:g} s") from None
    if event is None:
        raise SpeechError(f"{what} closed the connection")
    if Error.is_type(event.type):
        raise SpeechError(f"{what}: {Error.from_event(event).text}")
    return event


def _connect(uri: str, seconds: float) -> AsyncClient:
    return AsyncClient.from_uri(uri, connect_timeout=seconds)


async def preview(tts_uri: str, text: str, voice: Mapping[str, Any], wait: float) -> bytes:
    """Speak `text` in the voice settings `voice` (a persona's `voice:` section); the WAV bytes."""
    audio = Audio()
    try:
        async with _connect(tts_uri, wait) as tts:
            request = Synthesize(text=text).event()
            await tts.write_event(Event(request.type, {**request.data, INLINE_VOICE: dict(voice)}))
            while not AudioStop.is_type((event := await _next(tts, wait, "the TTS service")).type):
                if AudioChunk.is_type(event.type):
                    audio.take(event)
    except (OSError, TimeoutError) as err:
        raise SpeechError(f"cannot reach the TTS service at {tts_uri}: {err or type(err).__name__}") from None
    wav = audio.wav()
    if wav is None:
        raise SpeechError("the TTS service sent no audio")
    return wav


@dataclass
class TrialResult:
    text: str
    persona_id: str | None
    conversation_id: str
    first_text_ms: float | None = None
    first_audio_ms: float | None = None
    total_ms: float = 0.0
    wav: bytes | None = None
    intent: dict | None = None
    tts_error: str | None = None


OnText = Callable[[str, float], Awaitable[None]]
OnAudio = Callable[[float], Awaitable[None]]


async def trial_turn(
    persona_uri: str,
    tts_uri: str | None,
    persona_id: str,
    text: str,
    conversation_id: str,
    on_text: OnText,
    on_audio: OnAudio,
    wait: float,
) -> TrialResult:
    """One turn as `persona_id` (never switching the active persona), spoken like `talk` does it:
    each reply chunk goes to the TTS the moment it arrives, in the persona's own voice. Times are
    milliseconds from sending the message; `wait` bounds every single wait for an answer."""
    started = time.perf_counter()

    def since(moment: float) -> float:
        return round((moment - started) * 1000, 1)

    result = TrialResult("", None, conversation_id)
    context = {"conversation_id": conversation_id, ANSWER_AS: persona_id}
    try:
        async with _connect(persona_uri, wait) as persona:
            await persona.write_event(Transcript(text=text, context=context).event())
            speaker = _Speaker(tts_uri, persona_id, wait, on_audio, since) if tts_uri else None
            try:
                if speaker is not None:
                    await speaker.start()
                while True:
                    event = await _next(persona, wait, "the persona service")
                    if HandledChunk.is_type(event.type):
                        piece = HandledChunk.from_event(event).text or ""
                        if result.first_text_ms is None:
                            result.first_text_ms = since(time.perf_counter())
                        await on_text(piece, since(time.perf_counter()))
                        if speaker is not None:
                            await speaker.say(piece)
                        continue
                    if Handled.is_type(event.type) or NotHandled.is_type(event.type):
                        answer = (Handled if Handled.is_type(event.type) else NotHandled).from_event(event)
                        final, reply_context = answer.text or "", answer.context or {}
                    elif Intent.is_type(event.type):
                        intent = Intent.from_event(event)
                        final, reply_context = intent.text or "", intent.context or {}
                        result.intent = {
                            "name": intent.name,
                            "slots": {e.name: e.value for e in intent.entities},
                        }
                    else:
                        continue
                    result.text = final.lstrip(MARK_CHARS)
                    result.persona_id = reply_context.get("persona_id")
                    if result.first_text_ms is None:
                        result.first_text_ms = since(time.perf_counter())
                        await on_text(result.text, result.first_text_ms)
                    break
                if speaker is not None:
                    await speaker.finish(result.text)
                    result.first_audio_ms = speaker.first_audio_ms
                    result.wav = speaker.audio.wav()
                    result.tts_error = speaker.error
            finally:
                if speaker is not None:
                    await speaker.close()
    except (OSError, TimeoutError) as err:
        raise SpeechError(
            f"cannot reach the persona service at {persona_uri}: {err or type(err).__name__}"
        ) from None
    result.total_ms = since(time.perf_counter())
    return result


class _Speaker:
    """A streamed synthesis in one persona's voice. A TTS that fails leaves the text answer intact:
    the error is kept in `error`, not raised."""

    def __init__(
        self, uri: str, persona_id: str, timeout: float, on_audio: OnAudio, since: Callable[[float], float]
    ) -> None:
        self.uri = uri
        self.voice = SynthesizeVoice(name=persona_id)
        self.timeout = timeout
        self.on_audio = on_audio
        self.since = since
        self.audio = Audio()
        self.error: str | None = None
        self.first_audio_ms: float | None = None
        self.spoken = False
        self._client: AsyncClient | None = None
        self._reader: asyncio.Task | None = None

    async def start(self) -> None:
        try:
            self._client = _connect(self.uri, self.timeout)
            await self._client.connect()
            await self._client.write_event(SynthesizeStart(voice=self.voice).event())
        except (OSError, TimeoutError) as err:
            self._fail(f"cannot reach the TTS service at {self.uri}: {err or type(err).__name__}")
            return
        self._reader = asyncio.create_task(self._read())

    async def say(self, piece: str) -> None:
        if self._client is None or self.error or not piece.strip():
            return
        try:
            await self._client.write_event(SynthesizeChunk(text=piece).event())
            self.spoken = True
        except (OSError, RuntimeError) as err:
            self._fail(f"the TTS service went away: {err}")

    async def finish(self, text: str) -> None:
        if self._client is None or self.error:
            return
        try:
            if not self.spoken and text.strip():
                await self._client.write_event(SynthesizeChunk(text=text).event())
            # The compat event for servers that do not stream; a streaming server must not speak it.
            await self._client.write_event(Synthesize(text=text, voice=self.voice).event())
            await self._client.write_event(SynthesizeStop().event())
            if self._reader is not None:
                await self._reader
        except (OSError, RuntimeError) as err:
            self._fail(f"the TTS service went away: {err}")
        except SpeechError as err:
            self._fail(str(err))

    async def _read(self) -> None:
        assert self._client is not None
        while not SynthesizeStopped.is_type(
            (event := await _next(self._client, self.timeout, "the TTS service")).type
        ):
            if AudioChunk.is_type(event.type):
                first = self.audio.first is None
                self.audio.take(event)
                if first and self.audio.first is not None:
                    self.first_audio_ms = self.since(self.audio.first)
                    await self.on_audio(self.first_audio_ms)

    def _fail(self, message: str) -> None:
        self.error = self.error or message

    async def close(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._client is not None:
            await self._client.disconnect()
