"""The ASR server's per-connection handler: transcribe + audio in, (streamed) transcript out.

Speculative early decode: the VAD runs on every chunk. When it sees the end of speech (a short silence,
`early_silence_ms`) the trimmed speech is queued for transcription at once; if speech resumes, that job
is dropped. With `decode_ahead_ms` the decode starts sooner, after that much of a silence the VAD has
not yet confirmed: the bounds are the same, so is the transcript, and it is ready that much earlier.
At audio-stop, if nothing was said since, the transcript is usually ready already. The client's own
end-of-speech wait (Home Assistant waits ~0.7 s of silence before audio-stop) becomes
decoding time. Silence-only audio never reaches Whisper: the transcript is empty.

Answers: transcript-start, transcript-chunk per segment, the plain transcript (what Home Assistant
reads), transcript-stop. Transcripts are only sent after audio-stop: Home Assistant takes the first
transcript it sees, even one sent before its audio-stop, so a speculative result must not leak early.

Optional endpointing (`endpoint_ms`): the server itself ends the utterance after that much silence,
answers, and ignores the rest of the stream (Home Assistant 2026.5+ stops streaming when the transcript
arrives, if the server advertises requires_external_vad=False). A client's `vad_sensitivity` picks
Home Assistant's own waits (aggressive 250 ms, relaxed 1250 ms). No speech at all within
`no_speech_seconds` gives an empty transcript.

Endpointing by meaning (a Smart Turn v3 model, only with endpointing): at the early-decode point the
last 8 s of audio are judged in a worker thread; a turn judged complete ends at once, without waiting
for `endpoint_ms` of silence. A turn judged incomplete keeps the plain silence endpoint, no longer, so
Smart Turn only ever ends a turn sooner (a complete command it misjudges costs nothing over today).
Speech that resumes makes a pending judgement stale. A lock keeps a judgement from ending the stream in
the middle of an event.

Speculation link (`link`, optional): each early transcript is also posted to the persona service at
once, so the reply starts during the client's silence wait; speech that resumes takes it back (an
empty text), and a final transcript that differs (or comes from a decode that ended after the turn
did) is posted as the correction. While the user speaks, the words so far are posted as `partial`
every `partial_every_ms`, so the persona service reads the question as it comes. The link never
delays a transcript.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.event import Event
from wyoming.info import Info

from ..audio import RATE, AudioChunk, AudioStart, AudioStop
from ..audio_input import AudioInput
from ..speculate import SpeculationLink
from ..vad.segmenter import VadEventKind, VadSettings
from ..vad.silero import SileroModel
from ..wyoming_server import ClientError, FrameLimits, WyomingService
from .smart_turn import WINDOW_SAMPLES as TURN_WINDOW_SAMPLES
from .smart_turn import SmartTurnModel
from .transcriber import Cancelled, TranscriptResult, WhisperTranscriber
from .utterance import Utterance


@dataclass(frozen=True, slots=True)
class AsrSettings:
    language: str | None = "en"
    vad: VadSettings = field(default_factory=lambda: VadSettings(min_speech_ms=100, min_silence_ms=200))
    pad_ms: int = 300
    max_seconds: float = 30.0
    endpoint_ms: int | None = None  # set: end the utterance ourselves after this much silence
    no_speech_seconds: float = 8.0  # with endpointing: give up (empty transcript) if nobody speaks
    turn_threshold: float = 0.5  # with endpointing and Smart Turn: end a turn judged at least this complete
    decode_ahead_ms: int | None = 64  # silence after which the early decode starts (two VAD frames)
    partial_every_ms: int | None = 700  # with a speculation link: words so far, decoded this often in speech


# Home Assistant's own end-of-speech waits per sensitivity, used when a client asks for one.
_SENSITIVITY_MS = {"aggressive": 250, "relaxed": 1250}
# Audio before the first speech that Smart Turn sees (pipecat's pre_speech_ms).
_TURN_LEAD_MS = 500


def normalize_language(language: str | None) -> str | None:
    """'en-US' / 'en_us' -> 'en'; Whisper knows languages, not regions."""
    if not language:
        return None
    return language.replace("_", "-").split("-", 1)[0].lower()


class _Job:
    """A queued or running transcription of the speech between `bounds` (16 kHz samples)."""

    def __init__(
        self, transcriber: WhisperTranscriber, bounds: tuple[int, int], audio, language: str | None
    ) -> None:
        self.bounds = bounds
        self.cancel = threading.Event()
        self.task = asyncio.create_task(transcriber.transcribe(audio, language, self.cancel))
        self.task.add_done_callback(_consume)

    def drop(self) -> None:
        self.cancel.set()
        self.task.cancel()


def _consume(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()


class AsrEventHandler(WyomingService):
    """One connection; any number of transcribe/audio rounds."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        info: Callable[[], Info],
        limits: FrameLimits,
        *,
        transcriber: WhisperTranscriber,
        vad_model: SileroModel,
        settings: AsrSettings,
        turn_model: SmartTurnModel | None = None,
        link: SpeculationLink | None = None,
    ) -> None:
        super().__init__(reader, writer, info, limits)
        self.transcriber = transcriber
        self.vad_model = vad_model
        self.settings = settings
        self.language = settings.language
        self.audio = AudioInput()
        self.utterance: Utterance | None = None
        self.job: _Job | None = None
        self._answering: asyncio.Task | None = None
        self._jobs: set[_Job] = set()  # every unfinished job of this connection, dropped on hang-up
        self.endpoint_ms = settings.endpoint_ms
        self.turn_model = turn_model
        self._judgement: asyncio.Task | None = None  # a pending Smart Turn judgement
        self._judgement_run = None  # its onnxruntime RunOptions, to stop the model when it is moot
        self._lock = asyncio.Lock()  # one event, or one judgement's ending, at a time
        self.link = link
        self._posted: str | None = None  # the early transcript posted on the link for this utterance
        self._judged: tuple[int, int] | None = None  # the confirmed speech bounds Smart Turn was asked about
        self._partial: _Job | None = None  # a decode of the words so far while the user still speaks
        self._partial_at = 0  # the sample where the last one ended

    async def handle_event(self, event: Event) -> bool:
        async with self._lock:
            return await self._handle(event)

    async def _handle(self, event: Event) -> bool:
        if AudioChunk.is_type(event.type):
            await self._on_chunk(event)
            return True
        if Transcribe.is_type(event.type):
            self._on_transcribe(Transcribe.from_event(event))
            return True
        if AudioStart.is_type(event.type):
            self._drop()
            self._posted = self._judged = None
            self._partial_at = 0
            self.audio.start(event)
            self.utterance = Utterance(self.vad_model, self.settings.vad, self.settings.pad_ms)
            return True
        if AudioStop.is_type(event.type):
            await self._on_stop()
            return True
        raise self.unexpected(event)

    async def disconnect(self) -> None:
        judgement = self._judgement
        self._drop()
        if judgement is not None:
            await asyncio.wait([judgement])
        for job in list(self._jobs):
            job.drop()
        if self._answering is not None and not self._answering.done():
            self._answering.cancel()
            await asyncio.wait([self._answering])

    def _on_transcribe(self, request: Transcribe) -> None:
        if request.language is not None and not isinstance(request.language, str):
            raise ClientError(f"transcribe 'language' must be a string, got {request.language!r}")
        language = normalize_language(request.language) or self.settings.language
        known = self.transcriber.languages()
        if language is not None and language not in known:
            raise ClientError(
                f"language {request.language!r} is not supported by Whisper "
                f"{self.transcriber.settings.model_name} (supported: {', '.join(known)})",
                "unsupported-language",
            )
        self.language = language
        if self.settings.endpoint_ms is not None:
            sensitivity = getattr(request.vad_sensitivity, "value", request.vad_sensitivity)
            self.endpoint_ms = _SENSITIVITY_MS.get(str(sensitivity), self.settings.endpoint_ms)

    async def _on_chunk(self, event: Event) -> None:
        pcm = self.audio.chunk(event)
        utterance = self.utterance
        if not pcm or utterance is None:
            return
        if self.audio.seconds > self.settings.max_seconds:
            self._drop()
            self.audio.fail()
            raise ClientError(
                f"utterance longer than the {self.settings.max_seconds:g} s limit; audio dropped", "too-long"
            )
        events = await asyncio.to_thread(utterance.feed, pcm)
        if any(e.kind is VadEventKind.STARTED for e in events):
            self._cancel_judgement()
            self._take_back()
            if self.job is not None:
                self.log.debug("Connection %s: speech resumed, dropping early decode", self.connection_id)
                self.job.drop()
                self.job = None
        confirmed = utterance.bounds
        ahead = self.settings.decode_ahead_ms
        bounds = confirmed or (utterance.ending_bounds(ahead) if ahead is not None else None)
        if self.job is not None and self.job.bounds != bounds:
            if bounds is None:  # the silence the decode started in was a pause
                self.log.debug("Connection %s: speech went on, dropping early decode", self.connection_id)
                self._take_back()
            self.job.drop()
            self.job = None
        if bounds is not None and self.job is None:
            self.log.debug(
                "Connection %s: speech ended at %d ms%s, decoding early",
                self.connection_id,
                bounds[1] * 1000 // RATE,
                "" if confirmed else " (not yet confirmed)",
            )
            self.job = self._start_job(utterance, self.language, bounds)
        if confirmed is not None and confirmed != self._judged:
            self._judged = confirmed
            self._start_judgement(utterance, confirmed)
        if bounds is not None:
            self._drop_partial()  # the whole words are being decoded now
        elif self._partial_due(utterance):
            self._start_partial(utterance)
        if self._endpoint(utterance):
            # Our own end of speech: answer now and ignore the rest of this stream.
            self._cancel_judgement()
            self.audio.fail()
            await self._finalize(utterance)

    def _start_judgement(self, utterance: Utterance, bounds: tuple[int, int]) -> None:
        if self.turn_model is None or self.endpoint_ms is None:
            return
        self._cancel_judgement()
        audio = utterance.recent_audio(_TURN_LEAD_MS, TURN_WINDOW_SAMPLES)
        self._judgement_run = run = self.turn_model.run_options()
        self._judgement = asyncio.create_task(self._judge(self.turn_model, utterance, bounds, audio, run))

    async def _judge(
        self, model: SmartTurnModel, utterance: Utterance, bounds: tuple[int, int], audio, run
    ) -> None:
        """Ask Smart Turn about the speech that ended at `bounds`; end the utterance if it is complete."""
        try:
            started = time.perf_counter()
            probability = await asyncio.to_thread(model.probability, audio, run)
            async with self._lock:
                stale = self.utterance is not utterance or utterance.bounds != bounds
                complete = probability >= self.settings.turn_threshold
                self.log.debug(
                    "Connection %s: Smart Turn %.3f (%.0f ms) for speech ending at %d ms: %s",
                    self.connection_id,
                    probability,
                    (time.perf_counter() - started) * 1000,
                    bounds[1] * 1000 // RATE,
                    "too late, the utterance has ended or speech went on"
                    if stale
                    else "complete, ending the utterance"
                    if complete
                    else f"incomplete, waiting for {self.endpoint_ms} ms of silence",
                )
                if stale:
                    return
                if complete:
                    self.audio.fail()
                    await self._finalize(utterance)
        except Exception:  # a background task: the silence endpoint still ends the utterance
            self.log.exception("Connection %s: Smart Turn judgement failed", self.connection_id)

    def _cancel_judgement(self) -> None:
        """Drop a pending judgement; its model run stops too (it would slow the Whisper decode)."""
        if self._judgement is not None and not self._judgement.done():
            self._judgement_run.terminate = True
            self._judgement.cancel()
        self._judgement = self._judgement_run = None

    def _endpoint(self, utterance: Utterance) -> bool:
        if self.endpoint_ms is None:
            return False
        if not utterance.has_speech:
            return utterance.samples >= self.settings.no_speech_seconds * RATE
        bounds = utterance.bounds
        return bounds is not None and utterance.samples - bounds[1] >= self.endpoint_ms * RATE // 1000

    async def _on_stop(self) -> None:
        if self.audio.dropping:
            self.audio.stop()
            return
        utterance = self.utterance
        if not self.audio.stop() or utterance is None:
            raise ClientError("audio-stop without audio-start", "no-audio-start")
        self._cancel_judgement()
        await self._finalize(utterance)

    async def _finalize(self, utterance: Utterance) -> None:
        stopped_at = time.monotonic()
        await asyncio.to_thread(utterance.finish)
        job, self.job, self.utterance = self.job, None, None
        # Answer from a task so the connection keeps being read: a hang-up cancels the work at once.
        self._answering = asyncio.create_task(
            self._answer(utterance, job, self.language, stopped_at, self._answering)
        )

    async def _answer(
        self,
        utterance: Utterance,
        job: _Job | None,
        language: str | None,
        stopped_at: float,
        previous: asyncio.Task | None,
    ) -> None:
        try:
            if previous is not None:
                await asyncio.wait([previous])
            result, how = await self._result(utterance, job, language)
            final = result.text.strip()
            if self.link is not None and final != (self._posted or ""):
                # The words the reply must be for (a correction, or the first words posted when the
                # decode ended after the turn did); "" takes back what was posted.
                self.link.post(final)
            self._posted = None
            self.log.info(
                "Connection %s: %.2f s of audio, %s, transcript %.0f ms after the end of the stream",
                self.connection_id,
                utterance.samples / RATE,
                how,
                (time.monotonic() - stopped_at) * 1000,
            )
            self.log.debug("Connection %s: transcript %r", self.connection_id, result.text)
            await self._send(result, language)
        except ConnectionError:
            self.log.debug("Connection %s: client went away before its transcript", self.connection_id)
        except Exception as err:  # a background task: its own boundary, reported like the main one
            self.log.exception("Connection %s: transcription failed", self.connection_id)
            await self.send_error(f"transcription failed: {err}", "internal")

    async def _result(
        self, utterance: Utterance, job: _Job | None, language: str | None
    ) -> tuple[TranscriptResult, str]:
        bounds = utterance.bounds
        if bounds is None:
            if job is not None:
                job.drop()
            return TranscriptResult((), language, 0.0), "no speech"
        if job is not None and job.bounds == bounds:
            with contextlib.suppress(Cancelled):
                return await self._await(job), "early decode"
        elif job is not None:
            job.drop()
        return await self._await(self._start_job(utterance, language)), "decoded at audio-stop"

    def _start_job(
        self, utterance: Utterance, language: str | None, bounds: tuple[int, int] | None = None
    ) -> _Job:
        bounds = bounds or utterance.bounds
        if bounds is None:
            raise ValueError("a job needs speech that has ended")
        job = _Job(self.transcriber, bounds, utterance.speech_audio(bounds), language)
        self._jobs.add(job)
        job.task.add_done_callback(lambda _: self._jobs.discard(job))
        job.task.add_done_callback(lambda task: self._heard_early(job, task))
        return job

    def _heard_early(self, job: _Job, task: asyncio.Task) -> None:
        """An early decode of an utterance still open: post its words on the speculation link."""
        if self.link is None or self.job is not job or task.cancelled() or task.exception() is not None:
            return
        text = task.result().text.strip()
        if text != (self._posted or ""):
            self._posted = text
            self.link.post(text)

    def _partial_due(self, utterance: Utterance) -> bool:
        """Time for the words so far: with a link, while speech goes on, every `partial_every_ms`."""
        every = self.settings.partial_every_ms
        if self.link is None or every is None or utterance.speech_start is None or self.job is not None:
            return False
        if not utterance.vad.segmenter.in_speech or utterance.vad.segmenter.silence_start is not None:
            return False
        if self._partial is not None and not self._partial.task.done():
            return False
        step = every * RATE // 1000
        start = max(self._partial_at, utterance.speech_start)
        return utterance.samples - start >= step

    def _start_partial(self, utterance: Utterance) -> None:
        bounds = (utterance.speech_start, utterance.samples)
        self._partial_at = utterance.samples
        job = _Job(self.transcriber, bounds, utterance.speech_audio(bounds), self.language)
        self._partial = job
        self._jobs.add(job)
        job.task.add_done_callback(lambda _: self._jobs.discard(job))
        job.task.add_done_callback(lambda task: self._heard_partial(job, utterance, task))

    def _heard_partial(self, job: _Job, utterance: Utterance, task: asyncio.Task) -> None:
        """Words so far, while the user still speaks: the persona service reads them ahead."""
        if self.link is None or self._partial is not job or self.utterance is not utterance:
            return
        if self.job is not None or task.cancelled() or task.exception() is not None:
            return
        text = task.result().text.strip()
        if text:
            self.link.post(text, partial=True)

    def _drop_partial(self) -> None:
        if self._partial is not None:
            if not self._partial.task.done():
                self._partial.drop()
            self._partial = None

    def _take_back(self) -> None:
        """The posted words are not (or no longer) what the user said."""
        if self.link is not None and self._posted:
            self.link.post("")
        self._posted = None

    @staticmethod
    async def _await(job: _Job) -> TranscriptResult:
        try:
            return await job.task
        except asyncio.CancelledError:
            job.drop()
            raise

    async def _send(self, result: TranscriptResult, language: str | None) -> None:
        language = result.language or language
        await self.write_event(TranscriptStart(language=language).event())
        parts = [segment.strip() for segment in result.segments if segment.strip()]
        for index, part in enumerate(parts):
            await self.write_event(TranscriptChunk(text=part if index == 0 else f" {part}").event())
        await self.write_event(Transcript(text=result.text, language=language).event())
        await self.write_event(TranscriptStop().event())

    def _drop(self) -> None:
        self._cancel_judgement()
        self._drop_partial()
        if self.job is not None:
            self.job.drop()
            self.job = None
        self.utterance = None
