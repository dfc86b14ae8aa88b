"""One turn of conversation: voice command or LLM reply in the active persona, with fallback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from ..personas import Persona, PersonaManager, build_system_prompt
from .backends import BackendError, ChatBackend, ChatRequest
from .commands import Command, CommandKind, recognize, spoken_list
from .history import ConversationStore
from .shaping import ReplyShaper, speakable_piece

_LOGGER = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
DEFAULT_REPLY_TIMEOUT = 120.0
DEFAULT_MAX_REPLY_TOKENS = 150
NO_ANSWER = "Sorry, I have no answer to that."

OnChunk = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class ChatSettings:
    timeout: float = DEFAULT_TIMEOUT
    """Seconds to wait for the first piece of a reply, and for each next one."""
    reply_timeout: float = DEFAULT_REPLY_TIMEOUT
    """Seconds a whole reply may take."""
    max_reply_tokens: int = DEFAULT_MAX_REPLY_TOKENS
    """Used when the persona sets no `llm.max_reply_tokens`."""


class ReplySource(StrEnum):
    LLM = "llm"
    COMMAND = "command"
    FALLBACK = "fallback"


@dataclass(frozen=True)
class Reply:
    text: str
    persona_id: str
    source: ReplySource


class PersonaChat:
    """Shared by every connection: the persona manager, the backend and the conversation store."""

    def __init__(
        self,
        manager: PersonaManager,
        backend: ChatBackend,
        store: ConversationStore,
        settings: ChatSettings | None = None,
    ) -> None:
        self.manager = manager
        self.backend = backend
        self.store = store
        self.settings = settings or ChatSettings()
        self._failing: str | None = None

    async def respond(self, text: str, conversation_id: str, on_chunk: OnChunk) -> Reply:
        """Answer `text`; every speakable chunk goes to `on_chunk` as soon as it is ready."""
        persona = self.manager.active()
        command = recognize(text, self.manager.personas.values())
        if command is not None:
            reply = await self._command(command, persona, conversation_id)
            await on_chunk(reply.text)
            return reply
        return await self._generate(persona, text, conversation_id, on_chunk)

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
        messages = self.store.messages(conversation_id, persona.id, build_system_prompt(persona), text)
        request = ChatRequest(
            messages=tuple(messages),
            model=persona.llm.model,
            temperature=persona.llm.temperature,
            max_tokens=max_tokens,
        )
        shaper = ReplyShaper(max_tokens)
        try:
            truncated = await self._stream(request, shaper, on_chunk)
        except (BackendError, TimeoutError) as err:
            self._backend_failed(err)
            if shaper.text:  # part of the reply was already spoken: end it there
                return Reply(shaper.text, persona.id, ReplySource.FALLBACK)
            fallback = speakable_piece(persona.spec.fallbacks.backend_down)
            await on_chunk(fallback)
            return Reply(fallback, persona.id, ReplySource.FALLBACK)
        self._backend_ok()
        for chunk in shaper.finish(truncated):
            await on_chunk(chunk)
        reply = shaper.text
        if not reply:
            reply = NO_ANSWER
            await on_chunk(reply)
        else:
            self.store.add_turn(conversation_id, persona.id, text, reply)
        _LOGGER.debug("Reply as %s: %s", persona.id, reply)
        return Reply(reply, persona.id, ReplySource.LLM)

    async def _stream(self, request: ChatRequest, shaper: ReplyShaper, on_chunk: OnChunk) -> bool:
        """Feed the backend's pieces through the shaper; True if the reply was cut by the token cap."""
        truncated = False
        stream = self.backend.stream(request)
        try:
            async with asyncio.timeout(self.settings.reply_timeout):
                while True:
                    async with asyncio.timeout(self.settings.timeout):
                        delta = await anext(stream, None)
                    if delta is None:
                        break
                    for chunk in shaper.feed(delta.text):
                        await on_chunk(chunk)
                    if delta.finish_reason is not None:
                        truncated = delta.finish_reason == "length"
                    if shaper.capped:
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
