"""One TTS connection: synthesize (whole text) and synthesize-start/chunk/stop (streamed text).

Audio goes out per sentence as soon as Piper has it. A response runs in its own task so streamed
text keeps arriving while earlier sentences are spoken; disconnecting cancels it between pieces.

With a speech cache (tts/speech_cache.py) every response's audio events are recorded, findable by
voice and whole text; a request for a text spoken before in the same voice (a speculative reply the
persona service spoke ahead) is replayed from it. A streamed request's sentences wait while its text so
far is such a whole text: its synthesize-stop decides between the replay and speaking them.
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
from .engine import INLINE_VOICE, Target, TtsEngine, VoiceRequestError
from .speech_cache import Recording, speech_key
from .text import DEFAULT_MAX_PIECE_CHARS, Sentence, SentenceSplitter, pauses_after
from .worker import CHANNELS, SAMPLE_WIDTH

# Silence kept where one sentence was synthesized in pieces: about a spoken comma in all where the text
# has a comma there, next to none where it was cut between two words ("Boil an egg | for five minutes").
JOIN_TAIL = 0.12
JOIN_LEAD = 0.03
WORD_JOIN_TAIL = 0.02
WORD_JOIN_LEAD = 0.01

_AUDIO_TYPES = ("audio-start", "audio-chunk", "audio-stop")
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
    text: str = ""
    """The streamed text so far."""
    held: list[Sentence] | None = field(default_factory=list)
    """Sentences held while the text so far is a recorded response's whole text; None: not any more."""
    recording: Recording | None = None


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
        self._recording: Recording | None = None

    async def handle_event(self, event: Event) -> bool:
        if Synthesize.is_type(event.type):
            if self._stream is not None:
                # The compat copy of a streamed request: already being spoken from the chunks.
                self.log.debug("Connection %s: ignoring compat synthesize in a stream", self.connection_id)
                return True
            request = Synthesize.from_event(_with_text(event))
            await self._synthesize(request, event.data.get(INLINE_VOICE))
            return True
        if SynthesizeStart.is_type(event.type):
            await self.engine.manager.current()  # a switch made a moment ago elsewhere applies
            self._start(SynthesizeStart.from_event(_with_voice(event)), event.data.get(INLINE_VOICE))
            return True
        if SynthesizeChunk.is_type(event.type):
            self._chunk(SynthesizeChunk.from_event(_with_text(event)).text)
            return True
        if SynthesizeStop.is_type(event.type):
            await self._stop()
            return True
        raise self.unexpected(event)

    # -- whole text -------------------------------------------------------------------------------
    async def _synthesize(self, request: Synthesize, inline: object = None) -> None:
        await self.engine.manager.current()  # a switch made a moment ago elsewhere applies
        self._check_length(len(request.text))
        target = self._resolve(request.voice, inline)
        recording = self._recorded_as(target, request.text)
        if recording is not None and await self._replay(recording, streaming=False):
            return
        response = self._response(target, streaming=False)
        sentences = list(response.splitter.split(request.text))
        if not sentences:
            raise ClientError("nothing to speak: the text has no letters or digits", "empty-text")
        self.log.debug("Connection %s: synthesize %r as %s", self.connection_id, request.text, target.label)
        for sentence in sentences:
            response.queue.put_nowait(sentence)
        response.queue.put_nowait(None)
        await self._run(response)
        self._keep(response, request.text)  # (a request's text is known at once, its end only now)

    def _resolve(self, voice: SynthesizeVoice | None, inline: object = None) -> Target:
        """The voice of a request; an inline `persona_voice` (the studio's preview) wins over `voice`."""
        try:
            if inline is not None:
                return self.engine.resolve_inline(inline)
            return self.engine.resolve(voice.name if voice else None, voice.speaker if voice else None)
        except VoiceRequestError as err:
            raise ClientError(err.text, err.code) from None

    # -- streamed text ----------------------------------------------------------------------------
    def _start(self, start: SynthesizeStart, inline: object = None) -> None:
        if self._stream is not None and not self._stream.aborted:
            raise ClientError("synthesize-start while a stream is open; stop it first", "bad-order")
        target = self._resolve(start.voice, inline)
        self._stream = self._response(target, streaming=True)
        self._stream.task = self._spawn(self._speak_recorded(self._stream))
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
        stream.text += text
        sentences = list(stream.splitter.add(text))
        if stream.held is not None and self._recorded_as(stream.target, stream.text) is not None:
            stream.held += sentences  # maybe a replay: synthesize-stop decides
            return
        for sentence in [*(stream.held or ()), *sentences]:
            stream.queue.put_nowait(sentence)
        stream.held = None

    async def _stop(self) -> None:
        stream = self._stream
        if stream is None:
            raise ClientError("synthesize-stop without synthesize-start", "bad-order")
        self._stream = None
        recording = self._recorded_as(stream.target, stream.text) if stream.held is not None else None
        if recording is not None and not stream.aborted and await self._replay(recording, streaming=True):
            stream.queue.put_nowait(None)  # nothing was queued: the speaking task ends at once
            await self._wait(stream)
        elif not stream.aborted:  # a refused stream had its error when it was refused
            self._keep(stream, stream.text)
            for sentence in stream.held or ():
                stream.queue.put_nowait(sentence)
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
        recording = Recording() if self.engine.speech_cache is not None else None
        return _Response(target=target, streaming=streaming, splitter=splitter, recording=recording)

    async def _run(self, response: _Response) -> None:
        response.task = self._spawn(self._speak_recorded(response))
        await self._wait(response)

    # -- the speech cache -------------------------------------------------------------------------
    def _recorded_as(self, target: Target, text: str) -> Recording | None:
        """The recorded response of exactly this text in this voice, if the cache has it."""
        cache = self.engine.speech_cache
        return cache.find(speech_key(target.voice, target.settings, text)) if cache and text else None

    def _keep(self, response: _Response, text: str) -> None:
        """The response's whole text is known: its recording can be found by it from now on."""
        cache = self.engine.speech_cache
        if cache is not None and response.recording is not None:
            cache.keep(speech_key(response.target.voice, response.target.settings, text), response.recording)

    async def _speak_recorded(self, response: _Response) -> int:
        """`_speak`, its audio events recorded for the speech cache."""
        recording = response.recording
        self._recording = recording
        try:
            spoken = await self._speak(response)
        except BaseException:
            if recording is not None:
                recording.end(failed=True)
            raise
        finally:
            self._recording = None
        if recording is not None:
            recording.end()
            self.engine.speech_cache.evict()
        return spoken

    async def _replay(self, recording: Recording, streaming: bool) -> bool:
        """A recorded response's audio, as it was written (one audio-start/stop around it all for a
        request that did not stream); False when that response failed before anything was replayed
        (the request is then spoken as usual)."""
        started = time.monotonic()
        opened = written = False
        try:
            async for event in recording.follow():
                if not streaming and AudioStop.is_type(event.type):
                    continue
                if not streaming and AudioStart.is_type(event.type):
                    if opened:
                        continue
                    opened = True
                await self.write_event(event)
                written = True
        except RuntimeError:
            if written:
                raise
            self.log.debug("Connection %s: the response to replay failed; speaking it", self.connection_id)
            return False
        if not streaming:
            await self.write_event(AudioStop().event())
        self.engine.speech_cache.hits += 1
        self.log.info(
            "Connection %s: replayed a response from the speech cache (%.2f s)",
            self.connection_id,
            time.monotonic() - started,
        )
        return True

    async def write_event(self, event: Event) -> None:
        await super().write_event(event)
        if self._recording is not None and event.type in _AUDIO_TYPES:
            self._recording.add(event)

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
        paused = False  # the text pauses where the piece before this one ended
        while (sentence := await response.queue.get()) is not None:
            last = len(sentence.pieces) - 1
            for index, piece in enumerate(sentence.pieces):
                start_audio = index == 0 and (response.streaming or spoken == 0)
                trim = None
                joins_previous = index > 0 or sentence.continued
                joins_next = index < last or sentence.continues
                pauses = pauses_after(piece)
                if joins_previous or joins_next:  # a sentence in pieces: a join pauses only at a comma
                    trim = EdgeTrimmer(
                        rate,
                        keep_lead=(JOIN_LEAD if paused else WORD_JOIN_LEAD) if joins_previous else None,
                        keep_tail=(JOIN_TAIL if pauses else WORD_JOIN_TAIL) if joins_next else None,
                    )
                paused = pauses
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
