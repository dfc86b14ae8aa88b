"""The Wyoming side: transcript in, streamed handled-start/chunk/handled/stop out, or one `intent`
event for a home command (HA runs it and speaks the event's text)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from wyoming.asr import Transcript
from wyoming.event import Event
from wyoming.handle import Handled, HandledChunk, HandledStart, HandledStop, NotHandled
from wyoming.info import Attribution, HandleModel, HandleProgram, Info
from wyoming.intent import Entity, Intent

from .. import __version__
from ..personas import PersonaManager, UnknownPersonaError
from ..speakable import persona_mark
from ..speculate import Speculate
from ..wyoming_server import ClientError, FrameLimits, WyomingService
from .chat import OnChunk, PersonaChat, Reply
from .history import new_conversation_id
from .speculation import Speculator

DEFAULT_LIMITS = FrameLimits()
NOTHING_HEARD = "I didn't catch anything to answer."
DEVICE_KEYS = ("satellite_id", "device_id")
"""Where newer HA releases say in the transcript's context which device the user spoke to."""
ANSWER_AS = "answer_as"
"""Our key in a transcript's context: the id of the persona that answers this turn, without switching
the active one (the persona studio's chat). Home Assistant never sends it."""
SPEAKS_CHUNKS = "speaks_chunks"
"""Our key in a transcript's context: the client synthesizes the handled-chunks itself (our `talk`), so
a speculative reply's speech ahead is not needed. Home Assistant never sends it."""
ATTRIBUTION = Attribution(name="wyoming-persona", url="https://github.com/wyoming-persona/wyoming-persona")


def build_info(manager: PersonaManager, backend_name: str, home_control: bool = False) -> Info:
    """One handle program; each persona is a model (its language tells HA which pipelines can use it)."""
    models = [
        HandleModel(
            name=persona.id,
            attribution=ATTRIBUTION,
            installed=True,
            description=f"{persona.name}: {persona.spec.description}".rstrip(": "),
            version=__version__,
            languages=[persona.language],
        )
        for persona in manager.personas.values()
    ]
    program = HandleProgram(
        name="wyoming-persona",
        attribution=ATTRIBUTION,
        installed=True,
        description=f"Persona conversation agent ({backend_name}); the active persona answers",
        version=__version__,
        models=models,
        supports_handled_streaming=True,
        supports_home_control=home_control,
    )
    return Info(handle=[program])


class PersonaEventHandler(WyomingService):
    """One connection (HA opens one per utterance).

    The reply runs as a task so that the read loop keeps running: when the client goes away the
    loop ends, `disconnect()` cancels the task and with it the generation.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        info: Callable[[], Info],
        chat: PersonaChat,
        limits: FrameLimits = DEFAULT_LIMITS,
        pinned: str | None = None,
        speculator: Speculator | None = None,
    ) -> None:
        super().__init__(reader, writer, info, limits)
        self.chat = chat
        self.pinned = pinned
        """The persona every reply on this endpoint is in (`--pinned-persona`); None: the active one."""
        self.speculator = speculator
        """Replies started on the ASR's early transcripts (`speculate` events); None: off."""
        self._reply: asyncio.Task | None = None
        self._said_off = False

    async def handle_event(self, event: Event) -> bool:
        if Speculate.is_type(event.type):
            await self._speculate(event)
            return True
        if not Transcript.is_type(event.type):
            raise self.unexpected(event)
        text = event.data.get("text")
        context = event.data.get("context") or {}
        if not isinstance(text, str):
            raise ClientError("transcript needs a 'text' string")
        if not isinstance(context, dict):
            raise ClientError("transcript 'context' must be an object")
        answer_as = context.get(ANSWER_AS)
        if answer_as is not None and (not isinstance(answer_as, str) or not answer_as):
            raise ClientError(f"transcript context '{ANSWER_AS}' must be a persona id")
        await self._wait_for_reply()  # one reply at a time per connection
        conversation_id = context.get("conversation_id")
        if not isinstance(conversation_id, str) or not conversation_id:
            conversation_id = new_conversation_id()
        context = {**context, "conversation_id": conversation_id}
        if not text.strip():
            self.log.debug("Connection %s: empty transcript", self.connection_id)
            await self.write_event(NotHandled(text=NOTHING_HEARD, context=context).event())
            return True
        self.log.debug("Connection %s: transcript %r (%s)", self.connection_id, text, conversation_id)
        self._reply = asyncio.create_task(self._answer(text, context))
        return True

    async def _answer(self, text: str, context: dict) -> None:
        started = False

        async def on_chunk(chunk: str) -> None:
            nonlocal started
            if not started:  # sent with the first words: a home command answers with `intent` instead
                started = True
                await self.write_event(HandledStart(context=context).event())
            await self.write_event(HandledChunk(chunk).event())

        try:
            devices = [str(context[key]) for key in DEVICE_KEYS if context.get(key)]
            pinned = self.pinned or context.get(ANSWER_AS)
            try:
                speaks = context.get(SPEAKS_CHUNKS) is True
                conversation_id = context["conversation_id"]
                reply = await self._adopted(text, conversation_id, on_chunk, devices, pinned, speaks)
                if reply is None:
                    reply = await self.chat.respond(
                        text, context["conversation_id"], on_chunk, devices, pinned
                    )
            except UnknownPersonaError as err:
                self.log.warning("Connection %s: %s", self.connection_id, err)
                await self.send_error(f"this agent answers as persona {pinned!r}: {err}", "unknown-persona")
                return
            context = {**context, "persona_id": reply.persona_id}
            spoken = persona_mark(reply.persona_id) + reply.text
            if reply.intent is not None:
                entities = [Entity(name, value) for name, value in reply.intent.slots.items()]
                self.log.debug(
                    "Connection %s: intent %s %s", self.connection_id, reply.intent.name, reply.intent.slots
                )
                await self.write_event(Intent(reply.intent.name, entities, spoken, context).event())
                return
            if not started:
                await self.write_event(HandledStart(context=context).event())
            await self.write_event(Handled(text=spoken, context=context).event())
            await self.write_event(HandledStop().event())
        except ConnectionError as err:
            self.log.debug("Connection %s: client went away during the reply: %s", self.connection_id, err)
        except Exception as err:  # the reply task's boundary: the read loop cannot see its errors
            self.log.exception("Connection %s: reply failed", self.connection_id)
            await self.send_error(f"internal error while answering: {err}", "internal")

    async def _speculate(self, event: Event) -> None:
        """The ASR's early words (the speculation link): start the reply on them."""
        try:
            heard = Speculate.from_event(event)
        except ValueError as err:
            raise ClientError(str(err)) from None
        if self.speculator is None:
            if not self._said_off:
                self.log.info(
                    "Connection %s: early transcripts arrive, but speculation is off", self.connection_id
                )
                self._said_off = True
            return
        if heard.partial:
            await self.speculator.read_ahead(heard.text)
        else:
            await self.speculator.hear(heard.text)

    async def _adopted(
        self,
        text: str,
        conversation_id: str,
        on_chunk: OnChunk,
        devices: list[str],
        pinned: str | None,
        speaks_chunks: bool = False,
    ) -> Reply | None:
        """The speculative reply to exactly this turn, served; None when there is none to adopt."""
        if self.speculator is None:
            return None
        speculation = await self.speculator.claim(text, conversation_id, devices, pinned, speaks_chunks)
        if speculation is None:
            return None
        return await self.speculator.serve(speculation, on_chunk, conversation_id)

    async def _wait_for_reply(self) -> None:
        if self._reply is not None and not self._reply.done():
            await asyncio.shield(self._reply)

    async def disconnect(self) -> None:
        if self._reply is not None and not self._reply.done():
            self.log.debug("Connection %s: client gone, stopping the reply", self.connection_id)
            self._reply.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reply
