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
from ..personas import PersonaManager
from ..speakable import persona_mark
from ..wyoming_server import ClientError, FrameLimits, WyomingService
from .chat import PersonaChat
from .history import new_conversation_id

DEFAULT_LIMITS = FrameLimits()
NOTHING_HEARD = "I didn't catch anything to answer."
DEVICE_KEYS = ("satellite_id", "device_id")
"""Where newer HA releases say in the transcript's context which device the user spoke to."""
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
    ) -> None:
        super().__init__(reader, writer, info, limits)
        self.chat = chat
        self._reply: asyncio.Task | None = None

    async def handle_event(self, event: Event) -> bool:
        if not Transcript.is_type(event.type):
            raise self.unexpected(event)
        text = event.data.get("text")
        context = event.data.get("context") or {}
        if not isinstance(text, str):
            raise ClientError("transcript needs a 'text' string")
        if not isinstance(context, dict):
            raise ClientError("transcript 'context' must be an object")
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
            reply = await self.chat.respond(text, context["conversation_id"], on_chunk, devices)
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

    async def _wait_for_reply(self) -> None:
        if self._reply is not None and not self._reply.done():
            await asyncio.shield(self._reply)

    async def disconnect(self) -> None:
        if self._reply is not None and not self._reply.done():
            self.log.debug("Connection %s: client gone, stopping the reply", self.connection_id)
            self._reply.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reply
