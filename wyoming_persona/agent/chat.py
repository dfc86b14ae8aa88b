"""One turn of conversation: voice command or LLM reply in the active persona, with fallback."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ..home.request import Form, utterance_form
from ..personas import Persona, PersonaManager, build_system_prompt, example_turns, persona_messages
from ..sentences import split_sentences
from .backends import BackendError, ChatBackend, ChatMessage, ChatRequest, ToolCall
from .backends.tool_text import tool_names
from .commands import Command, CommandKind, pinned_reply, recognize, spoken_list
from .ha_context import READ_ONLY_TOOLS, clock_said, closing, look_first, mentions_home
from .history import ConversationStore
from .leak_guard import LeakGuard, Rule, Verdict
from .refusal import is_refusal, may_start_refusal, retry_messages
from .shaping import ReplyShaper, gap, speakable_piece, spoken_text

if TYPE_CHECKING:
    from ..home.control import HomeControl, HomeIntent
    from ..home.lines import Fact
    from ..service_metrics import LeakGuardMetrics

_LOGGER = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
DEFAULT_REPLY_TIMEOUT = 120.0
DEFAULT_MAX_REPLY_TOKENS = 150
DEFAULT_MAX_SENTENCES = 2
INTERJECTION_WORDS = 3
"""A sentence this short ("Ahoy, me hearty!", "Affirmative.") does not count toward the sentence limit:
the persona's greeting must not crowd out the answer (seen through HA: "Ahoy, me hearty! I'm Captain
Barnacle, matey." and no capital of Italy)."""
DEFAULT_DETAIL_SENTENCES = 6
DETAIL_FACTOR = 3
"""A reply the user asked to be detailed may have this many times the persona's token cap."""
REGENERATE_TEMPERATURE = 0.7
"""A reply the leak guard emptied, or a refusal, is generated once more, sampled at least this warm."""
NO_ANSWER = "Sorry, I have no answer to that."
"""Said when the model wrote nothing to speak, or the leak guard withheld both attempts: an honest
"no answer" rather than the greeting, which answers nothing."""
_ASKS_WHO = re.compile(
    r"\b(?:who|what) (?:are|r) (?:you|u)\b|\byour name\b|\bintroduce yourself\b", re.IGNORECASE
)
"""A question the persona's greeting answers, when the model's own answer was withheld twice (seen
through HA: "Who are you?" -> "I'm an artificial intelligence..." twice, then no answer)."""
LOGGED_CHARS = 60
"""A withheld piece is logged at INFO shortened to this many characters."""
PHRASE_MAX_TOKENS = 40
_DETAIL = re.compile(
    r"\b(?:tell me (?:more|about|everything)|in detail|details?|explain|describe|story|stories"
    r"|step by step|list|elaborate|longer|all about)\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*$")

OnChunk = Callable[[str], Awaitable[None]]
OnToolCalls = Callable[[tuple[ToolCall, ...]], Awaitable[None]]


@dataclass(frozen=True)
class ChatSettings:
    timeout: float = DEFAULT_TIMEOUT
    """Seconds to wait for the first piece of a reply, and for each next one."""
    reply_timeout: float = DEFAULT_REPLY_TIMEOUT
    """Seconds a whole reply may take."""
    max_reply_tokens: int = DEFAULT_MAX_REPLY_TOKENS
    """Used when the persona sets no `llm.max_reply_tokens`."""
    max_sentences: int = DEFAULT_MAX_SENTENCES
    """A spoken reply ends after this many sentences..."""
    detail_sentences: int = DEFAULT_DETAIL_SENTENCES
    """...or this many when the user asks for more ("explain", "tell me more", "a story")."""


class ReplySource(StrEnum):
    LLM = "llm"
    COMMAND = "command"
    HOME = "home"
    FALLBACK = "fallback"


@dataclass(frozen=True)
class Reply:
    text: str
    persona_id: str
    source: ReplySource
    intent: HomeIntent | None = None
    """A home command for HA to run; `text` is the persona's confirmation. Nothing was sent to on_chunk."""


class PersonaChat:
    """Shared by every connection: the persona manager, the backend and the conversation store."""

    def __init__(
        self,
        manager: PersonaManager,
        backend: ChatBackend,
        store: ConversationStore,
        settings: ChatSettings | None = None,
        home: HomeControl | None = None,
        device_personas: Mapping[str, str] | None = None,
        leak_metrics: LeakGuardMetrics | None = None,
    ) -> None:
        self.manager = manager
        self.backend = backend
        self.store = store
        self.settings = settings or ChatSettings()
        self.home = home
        self.device_personas = dict(device_personas or {})
        """Satellite or device id -> the persona that answers there (a persona per room)."""
        self.leak_metrics = leak_metrics
        """Counts what the leak guard did (the service's /metrics); None: not counted."""
        self._failing: str | None = None

    async def respond(
        self,
        text: str,
        conversation_id: str,
        on_chunk: OnChunk,
        devices: Iterable[str] = (),
        pinned: str | None = None,
    ) -> Reply:
        """Answer `text`; every speakable chunk goes to `on_chunk` as soon as it is ready.

        `devices` are the ids HA sent for where the user spoke (satellite, device): a room's own
        persona answers there. A home command comes back as `Reply.intent` with nothing sent to on_chunk.
        `pinned`: the persona this agent always answers as (a `--pinned-persona` endpoint, the studio's
        chat); a persona switch through it is answered, not made. UnknownPersonaError if it is gone.
        """
        persona = await self.persona_for(devices, pinned)
        command = recognize(text, self.manager.personas.values())
        if command is not None:
            refusal = pinned_reply(command, persona) if pinned else None
            if refusal is not None:
                reply = Reply(refusal, persona.id, ReplySource.COMMAND)
            else:
                reply = await self._command(command, persona, conversation_id)
            await on_chunk(reply.text)
            return reply
        if self.home is not None:
            home = await self.home.answer(text, persona, self._phrase, conversation_id)
            if home is not None:
                self.store.add_turn(conversation_id, persona.id, text, home.text)
                if home.intent is None:
                    await on_chunk(home.text)
                return Reply(home.text, persona.id, ReplySource.HOME, home.intent)
        return await self._generate(persona, text, conversation_id, on_chunk)

    async def persona_for(self, devices: Iterable[str] = (), pinned: str | None = None) -> Persona:
        """The persona that answers a turn: the pinned one, else the room's, else the active one."""
        if pinned:
            return await self.manager.lookup(pinned)
        return self._room_persona(devices) or await self.manager.current()

    def _room_persona(self, devices: Iterable[str]) -> Persona | None:
        for device in devices:
            persona_id = self.device_personas.get(device)
            if persona_id is None:
                continue
            persona = self.manager.personas.get(persona_id)
            if persona is not None:
                return persona
            _LOGGER.warning("Device %s is mapped to persona %r, which does not exist", device, persona_id)
        return None

    async def _phrase(self, persona: Persona, fact: Fact) -> str | None:
        """The persona says `fact` in its own words: one short sentence from the LLM, None on failure."""
        instruction = f"{fact.plain()} Tell me that in one short sentence, in your own words."
        messages = [*persona_messages(persona), {"role": "user", "content": instruction}]
        request = persona_request(persona, messages, PHRASE_MAX_TOKENS)
        written = ""
        stream = self.backend.stream(request)
        try:
            async with asyncio.timeout(self.settings.reply_timeout):
                async for delta in stream:
                    written += delta.text
        except (BackendError, TimeoutError) as err:
            self._backend_failed(err)
            return None
        finally:
            await stream.aclose()
        for sentence in split_sentences(spoken_text(written)):
            if len(sentence.split()) > INTERJECTION_WORDS:
                return sentence
        return None

    # -- voice commands -------------------------------------------------------------------------
    async def _command(self, command: Command, persona: Persona, conversation_id: str) -> Reply:
        _LOGGER.debug("Voice command %s (%s)", command.kind, command.spoken_name)
        if command.kind is CommandKind.SWITCH and command.persona_id is not None:
            new = await asyncio.to_thread(self.manager.set_active, command.persona_id)
            self.store.reset(conversation_id)
            return Reply(speakable_piece(new.greeting), new.id, ReplySource.COMMAND)
        if command.kind is CommandKind.WHO_AM_I:
            text = persona.greeting
            if persona.name.lower() not in text.lower():
                text = f"{text} I'm {persona.name}."
            return Reply(speakable_piece(text), persona.id, ReplySource.COMMAND)
        names = [p.name for p in self.manager.personas.values()]
        choices = spoken_list(names)
        if command.kind is CommandKind.UNKNOWN_PERSONA:
            text = f"I don't know {(command.spoken_name or '').title()}. You can talk to {choices}."
        else:
            text = f"You can talk to {choices}. Right now you are talking to {persona.name}."
        return Reply(speakable_piece(text), persona.id, ReplySource.COMMAND)

    # -- LLM ------------------------------------------------------------------------------------
    async def _generate(self, persona: Persona, text: str, conversation_id: str, on_chunk: OnChunk) -> Reply:
        max_tokens = persona.llm.max_reply_tokens or self.settings.max_reply_tokens
        max_sentences = self.settings.max_sentences
        if wants_detail(text):
            max_tokens, max_sentences = max_tokens * DETAIL_FACTOR, self.settings.detail_sentences
        system_prompt = build_system_prompt(persona)
        messages = self.store.messages(
            conversation_id, persona.id, system_prompt, text, examples=example_turns(persona)
        )
        request = persona_request(persona, messages, max_tokens)
        asked_who = _ASKS_WHO.search(text) is not None
        spoken = self._spoken_reply(persona, system_prompt, on_chunk, asked_who=asked_who)
        failed = await self._speak(request, persona, spoken, max_sentences)
        if failed is not None:
            return failed
        reply = spoken.text
        if not reply:  # nothing written, or withheld twice: not stored, the question is not answered
            reply = speakable_piece(persona.greeting) if asked_who else NO_ANSWER
            await on_chunk(reply)
        else:
            self.store.add_turn(conversation_id, persona.id, text, reply)
        _LOGGER.debug("Reply as %s: %s", persona.id, reply)
        return Reply(reply, persona.id, ReplySource.LLM)

    def _spoken_reply(
        self, persona: Persona, system_prompt: str, on_chunk: OnChunk, asked_who: bool = False
    ) -> _SpokenReply:
        """`asked_who`: the user asked who the persona is, so its identity ("I am Sunny Side, a cheerful
        morning person...") is the answer, not a leak; the rest of the prompt is still guarded."""
        if asked_who:
            system_prompt = system_prompt.replace(persona.spec.prompt.identity, "")
        guard = _guard(system_prompt, (persona.name, *persona.spec.aliases))
        return _SpokenReply(guard, on_chunk, self.leak_metrics)

    async def _speak(
        self,
        request: ChatRequest,
        persona: Persona,
        spoken: _SpokenReply,
        max_sentences: int,
        on_tool_calls: OnToolCalls | None = None,
        called: Callable[[], bool] = lambda: False,
    ) -> Reply | None:
        """Generate into `spoken`, once more (warmer) when the leak guard withheld all of it, or with
        the refusal named when the model refused before saying anything; a backend failure ends in
        the persona's fallback line (returned), else None (with nothing spoken when both attempts
        were withheld: the caller says `NO_ANSWER`)."""
        for attempt in range(2):
            shaper = ReplyShaper(request.max_tokens or self.settings.max_reply_tokens)
            try:
                truncated = await self._stream(request, shaper, spoken, max_sentences, on_tool_calls)
            except (BackendError, TimeoutError) as err:
                self._backend_failed(err)
                if spoken.text or called():  # part of the reply was already given: end it there
                    return Reply(spoken.text, persona.id, ReplySource.FALLBACK)
                fallback = speakable_piece(persona.spec.fallbacks.backend_down)
                await spoken.on_chunk(fallback)
                return Reply(fallback, persona.id, ReplySource.FALLBACK)
            self._backend_ok()
            for chunk in shaper.finish(truncated):
                await spoken.say(chunk)
            await spoken.flush()
            if spoken.refused and not attempt and not called() and not spoken.sentences:
                refused = spoken.refused
                _LOGGER.info("%s refused (%r); asking again, naming it", persona.id, _shorten(refused))
                spoken.count("regenerated", "refusal")
                temperature = max(request.temperature or 0.0, REGENERATE_TEMPERATURE)
                messages = retry_messages(request.messages, refused)
                request = dataclasses.replace(
                    request, messages=messages, temperature=temperature, avoid_openings=(refused,)
                )
                spoken.restart()
                continue
            if spoken.text or called() or not spoken.withheld:
                return None
            if attempt:
                _LOGGER.info(
                    "Leak guard withheld the second reply as %s too: the question is not answered", persona.id
                )
                spoken.count("unanswered")
                return None
            temperature = max(request.temperature or 0.0, REGENERATE_TEMPERATURE)
            _LOGGER.info(
                "Leak guard withheld the whole reply as %s; generating it again at temperature %.1f",
                persona.id,
                temperature,
            )
            spoken.count("regenerated")
            spoken.restart()
            request = dataclasses.replace(request, temperature=temperature)
        return None

    async def _stream(
        self,
        request: ChatRequest,
        shaper: ReplyShaper,
        spoken: _SpokenReply,
        max_sentences: int,
        on_tool_calls: OnToolCalls | None = None,
    ) -> bool:
        """Feed the backend's pieces through the shaper and the leak guard, and its tool calls to
        `on_tool_calls`; True if the reply was cut short (token cap, sentence limit, or the model
        began writing the user's turn). The sentence limit ends a reply with tools too: models write
        their calls first (qwen-1.5b in bench/tool_calls.py)."""
        truncated = False
        stream = self.backend.stream(request)
        try:
            async with asyncio.timeout(self.settings.reply_timeout):
                while True:
                    async with asyncio.timeout(self.settings.timeout):
                        delta = await anext(stream, None)
                    if delta is None:
                        break
                    if delta.tool_calls and on_tool_calls is not None:
                        await on_tool_calls(delta.tool_calls)
                    for chunk in shaper.feed(delta.text):
                        await spoken.say(chunk)
                    if delta.finish_reason is not None:
                        truncated = delta.finish_reason == "length"
                    if shaper.capped or spoken.ended or spoken.sentences >= max_sentences:
                        truncated = True
                        break
        finally:
            await stream.aclose()
        return truncated

    def _backend_failed(self, err: BaseException) -> None:
        reason = str(err) if isinstance(err, BackendError) else "timed out"
        if self._failing is None:
            _LOGGER.warning("%s: %s; answering with the persona's fallback line", self.backend.name, reason)
        else:
            _LOGGER.debug("%s still failing: %s", self.backend.name, reason)
        self._failing = reason

    def _backend_ok(self) -> None:
        if self._failing is not None:
            _LOGGER.info("%s answers again", self.backend.name)
            self._failing = None


def persona_request(persona: Persona, messages: Iterable[ChatMessage], max_tokens: int) -> ChatRequest:
    """A generation with the persona's own model and sampling settings."""
    return ChatRequest(
        messages=tuple(messages),
        model=persona.llm.model,
        temperature=persona.llm.temperature,
        top_p=persona.llm.top_p,
        repeat_penalty=persona.llm.repeat_penalty,
        max_tokens=max_tokens,
    )


def wants_detail(text: str) -> bool:
    """The user asked for more than a short answer."""
    return _DETAIL.search(text) is not None


def _shorten(text: str, limit: int = LOGGED_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@functools.lru_cache(maxsize=32)
def _guard(system_prompt: str, names: tuple[str, ...]) -> LeakGuard:
    return LeakGuard.build(system_prompt, names)


class _SpokenReply:
    """The chunks of one reply that passed the leak guard, sent on as they come; what the guard
    withheld is logged at INFO (shortened, with the rule) and counted in `metrics`. A sentence that
    refuses the question ("I'm sorry, but I can't assist with that.") is withheld too, and kept in
    `refused`; one that starts like a refusal waits until it is whole. Chunks are joined by the
    space or line break the model wrote between them: nothing is added."""

    def __init__(self, guard: LeakGuard, on_chunk: OnChunk, metrics: LeakGuardMetrics | None = None) -> None:
        self.guard = guard
        self.on_chunk = on_chunk
        self.metrics = metrics
        self.pieces: list[str] = []
        self.withheld = 0
        """Pieces the guard dropped or cut."""
        self.ended = False
        """The model started writing another turn: nothing after it is the reply."""
        self.refused = ""
        """The first refusal withheld from this attempt ("" if none)."""
        self._written = ""
        self._held = ""
        self._gap = ""
        """The whitespace the model wrote before the piece being screened (as `shaping.gap` keeps it)."""
        self._resumed = False
        """Generating again after something was spoken ("Hello!"): the new reply's first piece, which
        the model wrote with no space before it, goes on after one (not "Hello!Good evening")."""
        self._skipping: Verdict | None = None
        """A piece was dropped mid-sentence (this verdict): the rest of that sentence goes too, not a
        stray "sir."."""

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def sentences(self) -> int:
        """Complete sentences spoken so far, interjections left out."""
        complete = [s for s in split_sentences(self.text) if _SENTENCE_END.search(s)]
        return sum(1 for sentence in complete if len(sentence.split()) > INTERJECTION_WORDS)

    async def say(self, chunk: str) -> None:
        if not self._held:
            self._gap = gap(chunk[: len(chunk) - len(chunk.lstrip())])
        piece = (self._held + chunk).strip()  # a held clause and its rest, with the model's own space
        self._held = ""
        if not _SENTENCE_END.search(piece) and (self.guard.suspect(piece) or self._may_refuse(piece)):
            self._held = piece  # it may be the start of the prompt or a refusal: wait for the sentence
            return
        await self._screen(piece)

    def _may_refuse(self, piece: str) -> bool:
        starts_sentence = not self.text or _SENTENCE_END.search(self.text) is not None
        return starts_sentence and may_start_refusal(piece)

    async def flush(self) -> None:
        """The reply ended: screen a clause still waiting for its sentence on its own."""
        held, self._held = self._held, ""
        if held:
            await self._screen(held)

    def restart(self) -> None:
        """Before generating again: forget what was written and withheld (what was spoken stays)."""
        self.withheld, self.ended, self._written, self._held, self._skipping = 0, False, "", "", None
        self.refused = ""
        self._resumed = bool(self.pieces)

    def count(self, action: str, rule: str = "none") -> None:
        if self.metrics is not None:
            self.metrics.count(action, rule)

    async def _screen(self, piece: str) -> None:
        if self.ended or not piece:
            return
        ends_sentence = _SENTENCE_END.search(piece) is not None
        if self._skipping is not None:
            self._written = f"{self._written} {piece}"
            self._withhold(piece, self._skipping, "the rest of a sentence dropped for ")
            self._skipping = None if ends_sentence else self._skipping
            return
        verdict = self.guard.screen(piece, self.text, self._written)
        if verdict.rule is Rule.SELF_TALK and not self.refused and is_refusal(piece):
            # "As an AI, I don't have preferences": dropped as self-talk, named to the model as a refusal
            self.refused = piece
        self._written = f"{self._written} {piece}"
        self._skipping = verdict if not verdict.text and not ends_sentence else None
        if verdict.changed(piece):
            self._withhold(piece, verdict)
        self.ended = verdict.stop
        if verdict.text and is_refusal(verdict.text):
            self.refused = self.refused or verdict.text
            self.withheld += 1
            self.count("dropped", "refusal")
            _LOGGER.info("Refusal dropped %r", _shorten(verdict.text))
            self._skipping = None if ends_sentence else Verdict("", evidence=verdict.text)
        elif verdict.text:
            space = self._gap or (" " if self._resumed else "")
            self._resumed = False
            chunk = f"{space}{verdict.text}" if self.pieces else verdict.text
            await self.on_chunk(chunk)
            self.pieces.append(chunk)

    def _withhold(self, piece: str, verdict: Verdict, why: str = "") -> None:
        """Count and log a piece the guard dropped (or cut: part of it is spoken)."""
        self.withheld += 1
        action = "cut" if verdict.text else "dropped"
        rule = verdict.rule or "none"
        self.count(action, rule)
        _LOGGER.info(
            "Leak guard %s %r (%s%s: %r)", action, _shorten(piece), why, rule, _shorten(verdict.evidence)
        )


# -- turns whose history the client keeps (the Ollama-compatible API) ----------------------------
TOOL_TEMPERATURE = 0.2
"""With tools offered, the answer to a user's message samples at most this warm: calls need exact
JSON and names (qwen-1.5b: 5 and 3 of 10 HA commands right at the personas' 0.5 and 0.7, 8 and 9
with this and the tool rules of backends/tool_text.py)."""
TOOL_DONE = "Done."
"""Said when the model answers a tool's result only by making the same call again."""


@dataclass(frozen=True)
class ClientTurn:
    """A turn from a client that keeps the conversation itself (the Ollama-compatible API)."""

    messages: tuple[ChatMessage, ...]
    """Earlier turns and the new one, oldest first, without system messages."""
    persona_id: str | None = None
    """The persona that answers; None: the active one (a switch applies to the next turn)."""
    context: str = ""
    """The client's own instructions, given to the model after the persona's prompt."""
    tools: tuple[Mapping[str, Any], ...] = ()


async def respond_turn(
    chat: PersonaChat, turn: ClientTurn, on_chunk: OnChunk, on_tool_calls: OnToolCalls
) -> Reply:
    """Answer a client that sends the whole conversation and its tools (Home Assistant's Ollama
    integration) with `chat`'s backend, shaping and leak guard: the persona's prompt leads, the
    client's system text follows it. Speakable chunks go to `on_chunk`, the model's tool calls to
    `on_tool_calls`; nothing is stored (the client sends the history again)."""
    manager = chat.manager
    persona = manager.get(turn.persona_id) if turn.persona_id else await manager.current()
    last = turn.messages[-1] if turn.messages else None
    asked = last["content"] if last is not None and last["role"] == "user" else ""
    command = recognize(asked, manager.personas.values()) if asked else None
    if command is not None:
        reply = await chat._command(command, persona, "")
        await on_chunk(reply.text)
        return reply
    tool = look_first(asked, turn.context, tool_names(turn.tools)) if asked and turn.tools else None
    if tool is not None:  # the model answers from what the tool gives back, in the next round
        _LOGGER.debug("Looking first: %s for %r", tool, asked)
        await on_tool_calls((ToolCall(tool),))
        return Reply("", persona.id, ReplySource.LLM)
    question = next((m["content"] for m in reversed(turn.messages) if m["role"] == "user"), "")
    form = utterance_form(question).form if turn.tools and question else None
    offered = set(tool_names(turn.tools))
    max_tokens = persona.llm.max_reply_tokens or chat.settings.max_reply_tokens
    max_sentences = chat.settings.max_sentences
    if wants_detail(question):
        max_tokens, max_sentences = max_tokens * DETAIL_FACTOR, chat.settings.detail_sentences
    system_prompt = build_system_prompt(persona)
    system = f"{system_prompt}\n\n{turn.context}" if turn.context else system_prompt
    messages: list[ChatMessage] = [{"role": "system", "content": system}]
    if turn.context:  # HA's context (and the tools after it) is long: the persona once more after it
        again = closing(persona.spec.prompt.identity, persona.spec.prompt.style, example_turns(persona))
        messages.append({"role": "system", "content": again})
    # The persona's example turns answer in words only: with tools offered, a small model copies
    # them and stops calling (qwen-1.5b told the time rather than call GetDateTime).
    for user, assistant in () if turn.tools else example_turns(persona):
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    messages += clock_said(recent_turns(turn.messages, chat.store.settings.max_turns))
    temperature = persona.llm.temperature
    # The model decides on a call (the reply to a tool's result is speech); a question that names
    # nothing of the home is answered at the persona's own warmth, in character.
    if turn.tools and asked and mentions_home(asked, turn.context):
        temperature = min(temperature if temperature is not None else 1.0, TOOL_TEMPERATURE)
    request = ChatRequest(
        messages=tuple(messages),
        model=persona.llm.model,
        temperature=temperature,
        top_p=persona.llm.top_p,
        repeat_penalty=persona.llm.repeat_penalty,
        max_tokens=max_tokens,
        tools=turn.tools,
    )
    calls: list[ToolCall] = []
    made = {_call_key(call) for call in _calls_this_turn(turn.messages)}
    repeated = 0

    async def tool_calls(found: tuple[ToolCall, ...]) -> None:
        nonlocal repeated
        new = tuple(call for call in found if _call_key(call) not in made)
        repeated += len(found) - len(new)
        made.update(map(_call_key, new))
        # only tools offered, and a question is answered, never acted on
        allowed = offered if form is Form.REQUEST else offered & READ_ONLY_TOOLS
        for call in new:
            if call.name not in allowed:
                _LOGGER.info("Dropped the model's %s call: not offered, or not asked for", call.name)
        new = tuple(call for call in new if call.name in allowed)
        if new:
            calls.extend(new)
            await on_tool_calls(new)

    spoken = chat._spoken_reply(persona, system_prompt, on_chunk)
    failed = await chat._speak(request, persona, spoken, max_sentences, tool_calls, lambda: bool(calls))
    if failed is not None:
        return failed
    reply = spoken.text
    if not reply and not calls:
        if repeated:  # the model only made its last call again: it was done, so say so
            _LOGGER.debug("Dropped %d repeated tool calls", repeated)
            reply = TOOL_DONE
        else:  # nothing written, or withheld twice
            reply = NO_ANSWER
        await on_chunk(reply)
    _LOGGER.debug("Reply as %s: %r, tool calls %s", persona.id, reply, [call.name for call in calls])
    return Reply(reply, persona.id, ReplySource.LLM)


def _calls_this_turn(messages: Sequence[ChatMessage]) -> list[ToolCall]:
    """The tool calls made since the last user message (HA sends them back with their results)."""
    made: list[ToolCall] = []
    for message in messages:
        if message["role"] == "user":
            made.clear()
        for call in message.get("tool_calls") or ():
            made.append(ToolCall(call["function"]["name"], call["function"]["arguments"]))
    return made


def _call_key(call: ToolCall) -> str:
    return json.dumps([call.name, call.arguments], sort_keys=True, default=str)


def recent_turns(messages: Sequence[ChatMessage], max_turns: int) -> list[ChatMessage]:
    """The messages from the `max_turns + 1`-th last user message on: the new turn plus `max_turns`
    earlier exchanges, tool rounds included."""
    users = [index for index, message in enumerate(messages) if message["role"] == "user"]
    start = users[-(max_turns + 1)] if len(users) > max_turns else 0
    return list(messages[start:])
