"""Speculative replies: the reply starts on the ASR's early transcript, before the client asks.

Home Assistant 2026.2 waits about a second of silence before it asks the agent; our ASR has the words
0.3-0.5 s after the user stops and posts them on the speculation link (wyoming_persona/speculate.py).
`Speculator.hear` starts the reply at once, as the persona that will most likely answer, on the
history of the conversation it will most likely be asked in, with a private copy of that history: a
speculation changes nothing that a real turn can see. Its chunks and its `Reply` are kept, and its
text streams into the TTS service as it is written (`AheadSpeech`): Home Assistant waits for a reply's
whole speech before a satellite hears any of it, and the TTS replays a response it spoke ahead when
asked for the same text and voice (tts/speech_cache.py). A client that speaks the chunks itself (our
`talk`, context `speaks_chunks`) stops the speech ahead when it asks.

When the client's transcript comes, `claim` adopts the speculation only if it is for the same words,
the same persona (unchanged), exactly the history that conversation has, no question back is waiting
for its answer there, and the home has not changed since. `serve` then replays its chunks, follows the
rest live, and records its turn in that conversation (and a question back it asked). Anything else
cancels it at once. Every real generation stops a running speculation first (`PreemptingBackend`), and
the embedded model stops inside the prompt it is reading, so a speculation never holds the model while
a real turn waits; a home command is only recognised ahead: the intent goes to Home Assistant when it
asks, as always.

Which conversation a satellite's next turn comes in is learnt from the turns before it: Home Assistant
keeps a satellite's conversation for five minutes, a client that opens a new one every turn (`talk`,
the harness's satellite) is seen doing so. After two early transcripts in a row that nobody asked,
speculation pauses until one is asked again (a pipeline with another agent gains nothing from it).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from wyoming.client import AsyncClient
from wyoming.error import Error
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from ..personas import Persona, UnknownPersonaError
from ..speakable import persona_mark
from .backends import ChatRequest, Delta
from .chat import OnChunk, PersonaChat, Reply, ReplySource
from .commands import recognize
from .history import ConversationStore

_LOGGER = logging.getLogger(__name__)
_IDS = itertools.count(1)

Turns = tuple[tuple[str, str], ...]
TEXT_SENT_WAIT = 0.2
"""Longest wait, after an adopted reply is whole, for its speech ahead to have its whole text."""


@dataclass(frozen=True)
class SpeculationSettings:
    max_age: float = 30.0
    """A speculation is adopted at most this many seconds after it was heard."""
    conversation_seconds: float = 300.0
    """How long Home Assistant keeps a satellite's conversation (helpers/chat_session.py: 5 minutes)."""
    recent_seconds: float = 10.0
    """Words a client asked about this recently are not speculated on again (a late link message)."""
    unasked_limit: int = 2
    """Early transcripts in a row that nobody asked before speculation pauses."""
    tts_uri: str | None = None
    """The TTS service that synthesizes a speculative reply ahead; None: not synthesized ahead."""
    tts_timeout: float = 15.0


class SpeculationGate:
    """Knows the running speculation, so that a real generation can stop it first."""

    def __init__(self) -> None:
        self.task: asyncio.Task | None = None
        self.reading: asyncio.Task | None = None
        """A question being read ahead (`Speculator.read_ahead`)."""

    def preempt(self) -> None:
        """Cancel the running speculation and reading ahead, unless the caller is that speculation."""
        for task in (self.task, self.reading):
            if task is not None and not task.done() and asyncio.current_task() is not task:
                _LOGGER.debug("A real turn needs the model: stopping the speculative work")
                task.cancel()


class PreemptingBackend:
    """The chat backend as every real turn uses it: a generation first stops any speculation (which
    would otherwise hold the model's one worker until its next token). Everything else is delegated."""

    def __init__(self, backend: Any, gate: SpeculationGate) -> None:
        self.backend = backend
        self.gate = gate
        self.name = backend.name

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        if self.gate.task is None or asyncio.current_task() is not self.gate.task:
            self.gate.preempt()  # not the speculation's own request
        stream = self.backend.stream(request)
        try:
            async for delta in stream:
                yield delta
        finally:
            await stream.aclose()

    async def prefill(self, request: ChatRequest) -> int:
        """The backend reads a question ahead (only the embedded one can); stopped by a real turn."""
        prefill = getattr(self.backend, "prefill", None)
        return 0 if prefill is None else await prefill(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)


@dataclass
class _Route:
    """How the last voice turn was asked: in which conversation, by which persona."""

    conversation_id: str
    persona_id: str
    forced: str | None
    """The persona the agent chose by itself (pinned endpoint, room), None for the active one."""
    at: float
    continued: bool
    """It came in the conversation of the voice turn before it."""


class Speculation:
    """One reply started ahead: its words, assumptions, chunks so far and outcome."""

    def __init__(self, text: str, persona: Persona, history: Turns, chat: PersonaChat, snapshot: object):
        self.text = text
        self.persona = persona
        self.history = history
        """The conversation's turns it assumed (its private store holds a copy)."""
        self.chat = chat
        """A copy of the service's chat with a private conversation store."""
        self.conversation_id = f"speculation-{next(_IDS)}"
        self.snapshot = snapshot
        """The home as it was when the reply started (None without home control)."""
        self.chunks: list[str] = []
        self.reply: Reply | None = None
        self.finished = False
        self.claimed = False
        """A client asked for it while it was still being written."""
        self.started = time.monotonic()
        self.task: asyncio.Task | None = None
        self.speech: asyncio.Task | None = None
        """The speech ahead on the TTS service (None: not spoken ahead)."""
        self.spoken_text: asyncio.Queue[str | None] = asyncio.Queue()
        """What the speech ahead is to say, chunk by chunk; None ends it."""
        self.text_sent = asyncio.Event()
        """The speech ahead has its whole text (the TTS can replay it for that text from now on)."""
        self._changed = asyncio.Condition()

    async def on_chunk(self, chunk: str) -> None:
        if not self.chunks:
            self.spoken_text.put_nowait(persona_mark(self.persona.id))  # as Home Assistant will send it
        self.spoken_text.put_nowait(chunk)
        async with self._changed:
            self.chunks.append(chunk)
            self._changed.notify_all()

    async def words(self) -> AsyncIterator[str]:
        while (chunk := await self.spoken_text.get()) is not None:
            yield chunk

    async def end(self) -> None:
        async with self._changed:
            self.finished = True
            self._changed.notify_all()

    def cancel(self) -> None:
        for task in (self.task, self.speech):
            if task is not None and not task.done():
                task.cancel()

    async def follow(self, on_chunk: OnChunk) -> tuple[Reply | None, int]:
        """Pass every chunk on (those so far, then each as it comes) until the reply ends; returns
        the reply (None if it failed) and how many chunks were passed on."""
        sent = 0
        while True:
            async with self._changed:
                while len(self.chunks) == sent and not self.finished:
                    await self._changed.wait()
                new, finished = self.chunks[sent:], self.finished
            for chunk in new:
                await on_chunk(chunk)
            sent += len(new)
            if finished and sent == len(self.chunks):
                return self.reply, sent


class Speculator:
    """The one speculation of the service (there is one model): start, replace, adopt or cancel it."""

    def __init__(
        self,
        chat: PersonaChat,
        gate: SpeculationGate,
        settings: SpeculationSettings | None = None,
        ahead: AheadSpeech | None = None,
    ) -> None:
        self.chat = chat
        self.gate = gate
        self.settings = settings or SpeculationSettings()
        self.ahead = ahead
        self.current: Speculation | None = None
        self.counts = {"started": 0, "adopted": 0, "discarded": 0}
        self._route: _Route | None = None
        self._asked: dict[str, float] = {}
        """Words of real turns (stripped) -> when they were asked."""
        self._heard: list = []
        """The last early words heard: [text, asked]; emptied when they are taken back."""
        self._unasked = 0
        """Early words in a row that were heard, not taken back, and never asked."""

    # -- the ASR's side -----------------------------------------------------------------------------
    async def hear(self, text: str) -> None:
        """Early words of an utterance: start a reply on them ("" only takes the last one back)."""
        self.drop()
        text = text.strip()
        if self._heard and not self._heard[1] and text:
            self._unasked += 1  # the last words were neither asked nor taken back
        self._heard = [text, False] if text else []
        if not text:
            return
        now = time.monotonic()
        if now - self._asked.get(text, -1e9) < self.settings.recent_seconds:
            _LOGGER.debug("Speculation: %r was asked a moment ago; not again", text)
            return
        if self._unasked >= self.settings.unasked_limit:
            _LOGGER.debug("Speculation paused: the last %d early transcripts were never asked", self._unasked)
            return
        if recognize(text, self.chat.manager.personas.values()) is not None:
            return  # a voice command changes things and answers at once: only done when asked
        persona, history = await self._guess(now)
        store = ConversationStore(self.chat.store.settings)
        shadow = copy.copy(self.chat)
        shadow.store, shadow.leak_metrics = store, None
        home = self.chat.home
        spec = Speculation(text, persona, history, shadow, home.link.snapshot if home else None)
        for user, assistant in history:
            store.add_turn(spec.conversation_id, persona.id, user, assistant)
        spec.task = asyncio.create_task(self._run(spec), name=spec.conversation_id)
        if self.ahead is not None:
            spec.speech = asyncio.create_task(self.ahead.speak(spec.words(), persona.id, spec.text_sent))
        self.current, self.gate.task = spec, spec.task
        self.counts["started"] += 1
        _LOGGER.debug(
            "Speculation %s: replying to %r as %s on %d earlier turns",
            spec.conversation_id,
            text,
            persona.id,
            len(history),
        )

    async def read_ahead(self, text: str) -> None:
        """Words of a question still being spoken: the model reads them into its context, as the reply
        to them would begin, so that less is left to read when the words are whole. Nothing is said;
        a reply being made is never disturbed, and any real turn stops it.

        The first letter is read as a capital: Whisper begins a whole question with one, but a window
        cut mid-phrase sometimes not ("how many days are in a leap"), and a first token that differs
        from the question's would leave everything read ahead unused."""
        text = text.strip()
        text = text[:1].upper() + text[1:]
        busy = self.current is not None and not self.current.finished
        if not text or busy or self._unasked >= self.settings.unasked_limit:
            return
        persona, history = await self._guess(time.monotonic())
        request = await _opening(self.chat, persona, history, text)
        if request is None:
            return
        older = self.gate.reading
        if older is not None and not older.done():
            older.cancel()  # these words go further (what it read stays in the model)
        task = asyncio.create_task(self.chat.backend.prefill(request), name="read-ahead")
        task.add_done_callback(lambda done: _log_reading(done, text, persona.id))
        self.gate.reading = task

    def drop(self) -> None:
        """Cancel the current speculation (newer words came, or the old ones were taken back)."""
        spec, self.current = self.current, None
        if spec is not None:
            spec.cancel()
            self.counts["discarded"] += 1
            if self.gate.task is spec.task:
                self.gate.task = None

    async def _guess(self, now: float) -> tuple[Persona, Turns]:
        """The persona and history the coming turn most likely has: the last voice turn's way."""
        route = self._route
        recent = route is not None and now - route.at < self.settings.conversation_seconds
        persona = None
        if recent and route.forced:
            persona = self.chat.manager.personas.get(route.forced)
        if persona is None:
            persona = await self.chat.manager.current()
        history: Turns = ()
        if recent and route.continued:
            history = tuple(self.chat.store.turns(route.conversation_id, persona.id))
        return persona, history

    async def _run(self, spec: Speculation) -> None:
        try:
            spec.reply = await spec.chat.respond(
                spec.text, spec.conversation_id, spec.on_chunk, pinned=spec.persona.id
            )
            _LOGGER.debug(
                "Speculation %s ready in %.2f s: %r",
                spec.conversation_id,
                time.monotonic() - spec.started,
                spec.reply.text,
            )
            if not spec.chunks and spec.reply.text:  # a home intent: HA speaks its text
                spec.spoken_text.put_nowait(persona_mark(spec.reply.persona_id) + spec.reply.text)
        except asyncio.CancelledError:
            _LOGGER.debug("Speculation %s cancelled", spec.conversation_id)
            if spec.speech is not None:
                spec.speech.cancel()
            raise
        except Exception:  # the task's boundary: the real turn answers as if nothing was started
            _LOGGER.exception("Speculative reply to %r failed", spec.text)
        finally:
            spec.spoken_text.put_nowait(None)
            await spec.end()

    # -- the client's side --------------------------------------------------------------------------
    async def claim(
        self,
        text: str,
        conversation_id: str,
        devices: Iterable[str] = (),
        pinned: str | None = None,
        speaks_chunks: bool = False,
    ) -> Speculation | None:
        """The speculation to serve for this turn, or None (then any running one is cancelled).
        `speaks_chunks`: the client synthesizes the reply's chunks itself, so the speech ahead stops."""
        text, devices = text.strip(), list(devices)
        now = time.monotonic()
        self._asked[text] = now
        for old in [t for t, at in self._asked.items() if now - at > self.settings.max_age]:
            del self._asked[old]
        spec, self.current = self.current, None
        if spec is not None and self.gate.task is spec.task:
            self.gate.task = None  # adopted or not, it is no speculation any more
        if spec is None and not self._heard:
            return None
        persona: Persona | None = None
        with contextlib.suppress(UnknownPersonaError):
            persona = await self.chat.persona_for(devices, pinned)
        if persona is not None and self._heard and self._heard[0] == text:  # a voice turn: note its way
            self._heard[1], self._unasked = True, 0
            forced = pinned or (persona.id if _room_chose(self.chat, devices, persona) else None)
            previous = self._route
            continued = previous is None or previous.conversation_id == conversation_id
            self._route = _Route(conversation_id, persona.id, forced, now, continued)
        if spec is None:
            return None
        why = self._mismatch(spec, text, conversation_id, persona, now)
        if why is None:
            spec.claimed = True
            if speaks_chunks and spec.speech is not None:
                spec.speech.cancel()
            self.counts["adopted"] += 1
            _LOGGER.debug("Speculation %s adopted by conversation %s", spec.conversation_id, conversation_id)
            return spec
        spec.cancel()
        self.counts["discarded"] += 1
        _LOGGER.debug("Speculation %s not adopted: %s", spec.conversation_id, why)
        return None

    def _mismatch(
        self, spec: Speculation, text: str, conversation_id: str, persona: Persona | None, now: float
    ) -> str | None:
        """Why the speculation cannot be this turn's reply (`persona`: the one that answers), or None."""
        if spec.text != text:
            return "other words"
        if persona is None:
            return "the persona that answers is gone"
        if spec.finished and spec.reply is None:
            return "it failed"
        if spec.reply is not None and spec.reply.source is ReplySource.FALLBACK:
            return "it ended in the fallback line"
        if now - spec.started > self.settings.max_age:
            return "it is too old"
        if persona != spec.persona:
            return f"{persona.id} answers, the speculation was {spec.persona.id}"
        if tuple(self.chat.store.turns(conversation_id, persona.id)) != spec.history:
            return "the conversation's history is not the one it assumed"
        home = self.chat.home
        if home is not None:
            if home.asked.waiting(conversation_id):
                return "a question back waits for its answer in that conversation"
            if home.link.snapshot is not spec.snapshot:
                return "the home changed meanwhile"
        return None

    async def serve(self, spec: Speculation, on_chunk: OnChunk, conversation_id: str) -> Reply | None:
        """Pass the adopted reply on and record its turn in `conversation_id`; None when it failed
        before anything was passed on (the caller answers the usual way)."""
        timeout = self.chat.settings.reply_timeout * 2
        try:
            async with asyncio.timeout(timeout):
                reply, sent = await spec.follow(on_chunk)
        except TimeoutError:
            spec.cancel()
            raise
        if reply is None:
            if sent:
                raise RuntimeError("the adopted speculative reply failed halfway")
            return None
        if spec.speech is not None and not spec.speech.done():
            # Home Assistant asks the TTS right after the reply: the speech ahead must have its whole
            # text first, or the TTS would speak the reply a second time (never waited for long).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TEXT_SENT_WAIT):
                    await spec.text_sent.wait()
        persona_id = spec.persona.id
        turns = spec.chat.store.turns(spec.conversation_id, persona_id)
        if tuple(turns) != spec.history:
            self.chat.store.add_turn(conversation_id, persona_id, *turns[-1])
        home = self.chat.home
        if home is not None and (asked := home.asked.take(spec.conversation_id)) is not None:
            home.asked.put(conversation_id, asked)  # the question back waits where it was asked
        return reply


def _log_reading(task: asyncio.Task, text: str, persona_id: str) -> None:
    if not task.cancelled() and task.exception() is None:
        _LOGGER.debug("Read ahead %d tokens of %r as %s", task.result(), text, persona_id)
    elif not task.cancelled():
        _LOGGER.warning("Reading a question ahead failed: %s", task.exception())


class _Captured(Exception):
    """The request is kept: the shadow reply stops there (it would end in the no-answer line, logged
    as a reply)."""


class _Capture:
    """A backend that keeps the request it is given and stops the reply."""

    def __init__(self) -> None:
        self.name = "capture"
        self.requests: list[ChatRequest] = []

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        self.requests.append(request)
        raise _Captured
        yield  # an async generator


async def _opening(chat: PersonaChat, persona: Persona, history: Turns, text: str) -> ChatRequest | None:
    """The request a reply to `text` would make as `persona` after `history` (None: none would, e.g. a
    voice command), taken from `respond` itself so the two never differ."""
    if recognize(text, chat.manager.personas.values()) is not None:
        return None
    capture = _Capture()
    store = ConversationStore(chat.store.settings)
    for user, assistant in history:
        store.add_turn("read-ahead", persona.id, user, assistant)
    shadow = copy.copy(chat)
    shadow.backend, shadow.store, shadow.home, shadow.leak_metrics = capture, store, None, None

    async def ignore(_: str) -> None:
        return None

    with contextlib.suppress(_Captured):
        await shadow.respond(text, "read-ahead", ignore, pinned=persona.id)
    return capture.requests[0] if capture.requests else None


def _room_chose(chat: PersonaChat, devices: list[str], persona: Persona) -> bool:
    """The device's room chose this persona (not the active persona setting)."""
    return any(chat.device_personas.get(device) == persona.id for device in devices)


class AheadSpeech:
    """Speaks a speculative reply on the TTS service while it is written: a streamed request (as our
    `talk` makes), its text chunk by chunk, so its audio is recorded by the TTS's speech cache."""

    def __init__(self, uri: str, timeout: float = 15.0) -> None:
        self.uri = uri
        self.timeout = timeout
        """Longest wait for the connection, and for the speech once its text is whole."""
        self._failing = False

    async def speak(self, chunks: AsyncIterator[str], voice: str, sent: asyncio.Event | None = None) -> bool:
        """True when the TTS spoke it all; a failure is logged (once per episode) and changes nothing.
        `sent` is set once the whole text is written."""
        name = SynthesizeVoice(name=voice)
        try:
            async with asyncio.timeout(self.timeout):
                client = AsyncClient.from_uri(self.uri)
                await client.connect()
            reader = asyncio.create_task(self._read(client))
            try:
                await client.write_event(SynthesizeStart(voice=name).event())
                text = ""
                async for chunk in chunks:
                    text += chunk
                    await client.write_event(SynthesizeChunk(text=chunk).event())
                await client.write_event(Synthesize(text=text, voice=name).event())
                await client.write_event(SynthesizeStop().event())
                if sent is not None:
                    sent.set()
                async with asyncio.timeout(self.timeout):
                    await reader
            finally:
                reader.cancel()
                with contextlib.suppress(OSError, RuntimeError):
                    await client.disconnect()
        except (OSError, TimeoutError) as err:
            (_LOGGER.debug if self._failing else _LOGGER.warning)(
                "Speech ahead on %s failed (%s); Home Assistant's request synthesizes it",
                self.uri,
                err or type(err).__name__,
            )
            self._failing = True
            return False
        self._failing = False
        return True

    @staticmethod
    async def _read(client: AsyncClient) -> None:
        """The audio goes nowhere (the TTS keeps it); read until synthesize-stopped."""
        while (event := await client.read_event()) is not None:
            if Error.is_type(event.type):
                _LOGGER.warning("Speech ahead: the TTS says %s", Error.from_event(event).text)
            if SynthesizeStopped.is_type(event.type):
                return
        raise ConnectionResetError("the TTS closed the connection")


async def closing(speculator: Speculator | None) -> None:
    """Cancel what runs when the service stops."""
    if speculator is not None:
        spec = speculator.current
        speculator.drop()
        if spec is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*(t for t in (spec.task, spec.speech) if t), return_exceptions=True)
