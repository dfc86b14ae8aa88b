"""One TTS connection: synthesize (whole text) and synthesize-start/chunk/stop (streamed text).

Audio goes out per sentence as soon as Piper has it. A response runs in its own task so streamed
text keeps arriving while earlier sentences are spoken; disconnecting cancels it between pieces.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from ..wyoming_server import ClientError, FrameLimits, WyomingService
from .effects import EdgeTrimmer
from .engine import Target, TtsEngine, VoiceRequestError
from .text import DEFAULT_MAX_PIECE_CHARS, Sentence, SentenceSplitter
from .worker import CHANNELS, SAMPLE_WIDTH

# Silence kept where one sentence was synthesized in pieces: about a spoken comma in all.
JOIN_TAIL = 0.12
JOIN_LEAD = 0.03

DEFAULT_MAX_CHARS = 20_000
DEFAULT_SAMPLES_PER_CHUNK = 1024


@dataclass(frozen=True)
class ResponseSettings:
    max_chars: int = DEFAULT_MAX_CHARS
    samples_per_chunk: int = DEFAULT_SAMPLES_PER_CHUNK
    max_piece_chars: int = DEFAULT_MAX_PIECE_CHARS
    split_first_clause: bool = True


@dataclass
class _Response:
    """One response in progress: sentences queued for the speaking task."""

    target: Target
    streaming: bool
    splitter: SentenceSplitter
    queue: asyncio.Queue[Sentence | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task | None = None
    chars: int = 0
    aborted: bool = False


class TtsEventHandler(WyomingService):
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        engine: TtsEngine,
        settings: ResponseSettings = ResponseSettings(),
        limits: FrameLimits | None = None,
    ) -> None:
        super().__init__(reader, writer, engine.info, limits or FrameLimits())
        self.engine = engine
        self.settings = settings
        self._stream: _Response | None = None
        self._cancel = threading.Event()
        self._tasks: set[asyncio.Task] = set()

    async def handle_event(self, event: Event) -> bool:
        if Synthesize.is_type(event.type):
            if self._stream is not None:
                # The compat copy of a streamed request: already being spoken from the chunks.
                self.log.debug("Connection %s: ignoring compat synthesize in a stream", self.connection_id)
                return True
            request = Synthesize.from_event(_with_text(event))
            await self._synthesize(request)
            return True
        if SynthesizeStart.is_type(event.type):
            await self.engine.manager.current()  # a switch made a moment ago elsewhere applies
            self._start(SynthesizeStart.from_event(_with_voice(event)))
            return True
        if SynthesizeChunk.is_type(event.type):
            self._chunk(SynthesizeChunk.from_event(_with_text(event)).text)
            return True
        if SynthesizeStop.is_type(event.type):
            await self._stop()
            return True
        raise self.unexpected(event)

    # -- whole text -------------------------------------------------------------------------------
    async def _synthesize(self, request: Synthesize) -> None:
        await self.engine.manager.current()  # a switch made a moment ago elsewhere applies
        self._check_length(len(request.text))
        target = self._resolve(request.voice)
        response = self._response(target, streaming=False)
        sentences = list(response.splitter.split(request.text))
        if not sentences:
            raise ClientError("nothing to speak: the text has no letters or digits", "empty-text")
        self.log.debug("Connection %s: synthesize %r as %s", self.connection_id, request.text, target.label)
        for sentence in sentences:
            response.queue.put_nowait(sentence)
        response.queue.put_nowait(None)
        await self._run(response)

    def _resolve(self, voice: SynthesizeVoice | None) -> Target:
        try:
            return self.engine.resolve(voice.name if voice else None, voice.speaker if voice else None)
        except VoiceRequestError as err:
            raise ClientError(err.text, err.code) from None

    # -- streamed text ----------------------------------------------------------------------------
    def _start(self, start: SynthesizeStart) -> None:
        if self._stream is not None and not self._stream.aborted:
            raise ClientError("synthesize-start while a stream is open; stop it first", "bad-order")
        target = self._resolve(start.voice)
        self._stream = self._response(target, streaming=True)
        self._stream.task = self._spawn(self._speak(self._stream))
        self.log.debug("Connection %s: stream started as %s", self.connection_id, target.label)

    def _chunk(self, text: str) -> None:
        stream = self._stream
        if stream is None:
            raise ClientError("synthesize-chunk without synthesize-start", "bad-order")
        if stream.aborted:
            return
        self._raise_if_failed(stream)
        stream.chars += len(text)
        if stream.chars > self.settings.max_chars:
            self._abort(stream)
            self._check_length(stream.chars)
        for sentence in stream.splitter.add(text):
            stream.queue.put_nowait(sentence)

    async def _stop(self) -> None:
        stream = self._stream
        if stream is None:
            raise ClientError("synthesize-stop without synthesize-start", "bad-order")
        self._stream = None
        if not stream.aborted:  # a refused stream had its error when it was refused
            for sentence in stream.splitter.finish():
                stream.queue.put_nowait(sentence)
            stream.queue.put_nowait(None)
            if not await self._wait(stream):
                text = "nothing to speak: the streamed text has no letters or digits"
                self.log.warning("Connection %s: %s", self.connection_id, text)
                await self.send_error(text, "empty-text")
        # Every stream ends with synthesize-stopped, refused or empty ones too: Home Assistant ignores
        # `error` and reads until synthesize-stopped, so without it HA would wait for ever.
        await self.write_event(SynthesizeStopped().event())

    # -- speaking ---------------------------------------------------------------------------------
    def _response(self, target: Target, streaming: bool) -> _Response:
        splitter = SentenceSplitter(self.settings.max_piece_chars, self.settings.split_first_clause)
        return _Response(target=target, streaming=streaming, splitter=splitter)

    async def _run(self, response: _Response) -> None:
        response.task = self._spawn(self._speak(response))
        await self._wait(response)

    async def _wait(self, response: _Response) -> int:
        assert response.task is not None
        return await response.task

    async def _speak(self, response: _Response) -> int:
        """Speak queued sentences until None; returns how many were spoken."""
        target = response.target
        worker = await self.engine.pool.get(target.voice)
        rate = worker.sample_rate
        audio_format = {"rate": rate, "width": SAMPLE_WIDTH, "channels": CHANNELS}
        bytes_per_chunk = self.settings.samples_per_chunk * SAMPLE_WIDTH * CHANNELS
        started = time.monotonic()
        first_audio: float | None = None
        spoken = 0
        samples = 0
        while (sentence := await response.queue.get()) is not None:
            last = len(sentence.pieces) - 1
            for index, piece in enumerate(sentence.pieces):
                start_audio = index == 0 and (response.streaming or spoken == 0)
                trim = None
                joins_previous = index > 0 or sentence.continued
                joins_next = index < last or sentence.continues
                if joins_previous or joins_next:  # a sentence in pieces: joins get a comma's pause
                    trim = EdgeTrimmer(
                        rate,
                        keep_lead=JOIN_LEAD if joins_previous else None,
                        keep_tail=JOIN_TAIL if joins_next else None,
                    )
                # Audio goes out chunk by chunk while the rest of the piece is still being synthesized.
                early = first_audio is None  # only the reply's first audio is worth extra decoder work
                async for pcm in worker.stream(piece, target.settings, self._cancel, early):
                    pcm = trim.add(pcm) if trim is not None else pcm
                    if not pcm:
                        continue
                    if first_audio is None:
                        first_audio = time.monotonic() - started
                    if start_audio:
                        await self.write_event(AudioStart(**audio_format).event())
                        start_audio = False
                    for offset in range(0, len(pcm), bytes_per_chunk):
                        chunk = pcm[offset : offset + bytes_per_chunk]
                        await self.write_event(AudioChunk(audio=chunk, **audio_format).event())
                    samples += len(pcm) // SAMPLE_WIDTH
                pcm = trim.finish() if trim is not None else b""
                if start_audio:
                    await self.write_event(AudioStart(**audio_format).event())
                for offset in range(0, len(pcm), bytes_per_chunk):
                    chunk = pcm[offset : offset + bytes_per_chunk]
                    await self.write_event(AudioChunk(audio=chunk, **audio_format).event())
                samples += len(pcm) // SAMPLE_WIDTH
            if response.streaming:
                await self.write_event(AudioStop().event())
            spoken += 1
        if spoken and not response.streaming:
            await self.write_event(AudioStop().event())
        if spoken:
            self.log.info(
                "Connection %s: spoke %d sentences as %s (%.1f s audio, first audio %.3f s, total %.2f s)",
                self.connection_id,
                spoken,
                target.label,
                samples / rate,
                first_audio or 0.0,
                time.monotonic() - started,
            )
        return spoken

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _abort(self, stream: _Response) -> None:
        stream.aborted = True
        if stream.task is not None:
            stream.task.cancel()

    def _raise_if_failed(self, stream: _Response) -> None:
        """Surface a failure of the speaking task at the next chunk (the boundary reports it)."""
        task = stream.task
        if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            self._stream = None
            raise task.exception()

    def _check_length(self, chars: int) -> None:
        if chars > self.settings.max_chars:
            raise ClientError(
                f"text is {chars} characters; this server speaks at most {self.settings.max_chars} "
                "per request (--max-chars)",
                "too-long",
            )

    async def disconnect(self) -> None:
        """The client is gone: stop speaking (between pieces) and drop queued text."""
        self._cancel.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _with_text(event: Event) -> Event:
    text = event.data.get("text")
    if not isinstance(text, str):
        raise ClientError(f"{event.type} needs a string 'text'", "bad-request")
    return _with_voice(event)


def _with_voice(event: Event) -> Event:
    voice = event.data.get("voice")
    if voice is None:  # absent or null: the active persona (wyoming's from_dict needs a dict)
        return Event(event.type, {**event.data, "voice": {}}, event.payload)
    if not isinstance(voice, dict):
        raise ClientError(f"{event.type}: 'voice' must be an object with a 'name'", "bad-request")
    name, speaker = voice.get("name"), voice.get("speaker")
    if name is not None and not isinstance(name, str):
        raise ClientError(f"{event.type}: the voice 'name' must be a string, got {name!r}")
    if speaker is not None and (not isinstance(speaker, str | int) or isinstance(speaker, bool)):
        raise ClientError(f"{event.type}: the voice 'speaker' must be a string, got {speaker!r}")
    return event
