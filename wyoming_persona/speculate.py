"""The speculation link: the ASR tells the persona service what it heard before the client asks.

Home Assistant waits about a second of silence before it sends the transcript to the agent; our ASR
has the words 0.3-0.5 s after the user stops (its early decode). It sends them to the persona
service's own Wyoming port as a `speculate` event, so the reply starts during Home Assistant's wait
(agent/speculation.py). An empty text takes back what was sent (the user went on speaking, or the
final transcript differs). A `partial` text is what the user has said so far while still speaking:
the persona service only reads it into its model, so that less of the question is left to read when
the words are whole. Nothing is answered: the link is one-way, and the ASR never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from urllib.parse import urlparse

from wyoming.client import AsyncClient
from wyoming.event import Event, Eventable

_LOGGER = logging.getLogger(__name__)

SPECULATE_TYPE = "speculate"
MAX_TEXT = 2000
"""Longest text a speculate event may carry (a transcript is a sentence or two)."""
DEFAULT_TIMEOUT = 2.0


@dataclass(frozen=True)
class Speculate(Eventable):
    """What the ASR heard so far in an utterance; "" takes it back."""

    text: str = ""
    partial: bool = False
    """The user is still speaking: these are the first words only."""

    @staticmethod
    def is_type(event_type: str) -> bool:
        return event_type == SPECULATE_TYPE

    def event(self) -> Event:
        data: dict = {"text": self.text}
        if self.partial:
            data["partial"] = True
        return Event(SPECULATE_TYPE, data)

    @staticmethod
    def from_event(event: Event) -> Speculate:
        """ValueError for anything but a string text of at most MAX_TEXT characters."""
        text = event.data.get("text", "")
        if not isinstance(text, str):
            raise ValueError(f"speculate 'text' must be a string, got {type(text).__name__}")
        if len(text) > MAX_TEXT:
            raise ValueError(f"speculate 'text' is {len(text)} characters; at most {MAX_TEXT}")
        partial = event.data.get("partial", False)
        if not isinstance(partial, bool):
            raise ValueError(f"speculate 'partial' must be true or false, got {partial!r}")
        return Speculate(text, partial)


def check_uri(uri: str, flag: str) -> str:
    """`uri` if it names a Wyoming server this side can connect to, else ValueError naming `flag`."""
    parsed = urlparse(uri)
    if parsed.scheme == "tcp" and parsed.hostname and parsed.port:
        return uri
    if parsed.scheme == "unix" and uri[len("unix://") :]:
        return uri
    raise ValueError(f"{flag} {uri!r}: use tcp://HOST:PORT or unix://PATH")


class SpeculationLink:
    """One connection from the ASR to the persona service, shared by every ASR connection.

    `post` never blocks: the text waits in a one-place mailbox (a newer text replaces it) and a
    background task connects and writes, each step under `timeout`. A failure drops the text (it
    would be stale by the next try), is logged once per failure episode, and the next `post` connects
    again.
    """

    def __init__(self, uri: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.uri = uri
        self.timeout = timeout
        self.sent = 0
        """Events written (tests and logs)."""
        self._mailbox: Speculate | None = None
        self._wake = asyncio.Event()
        self._client: AsyncClient | None = None
        self._reader: asyncio.Task | None = None
        self._task: asyncio.Task | None = None
        self._failing = False

    def post(self, text: str, partial: bool = False) -> None:
        """Hand `text` to the persona service as soon as possible ("" takes back the last one)."""
        self._mailbox = Speculate(text, partial)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="speculation-link")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._disconnect()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            heard, self._mailbox = self._mailbox, None
            if heard is None:
                continue
            try:
                async with asyncio.timeout(self.timeout):
                    await self._send(heard.event())
            except (OSError, TimeoutError) as err:
                await self._disconnect()
                (_LOGGER.debug if self._failing else _LOGGER.warning)(
                    "Speculation link to %s failed (%s); the reply starts when the client asks",
                    self.uri,
                    err or type(err).__name__,
                )
                self._failing = True
            else:
                if self._failing:
                    _LOGGER.info("Speculation link to %s works again", self.uri)
                self._failing = False

    async def _send(self, event: Event) -> None:
        if self._client is None:
            client = AsyncClient.from_uri(self.uri)
            await client.connect()
            self._client = client
            self._reader = asyncio.create_task(self._watch(client), name="speculation-link-reader")
            _LOGGER.debug("Speculation link connected to %s", self.uri)
        try:
            await self._client.write_event(event)
        except (OSError, RuntimeError, TypeError) as err:  # a lost connection (see wyoming_server)
            raise ConnectionResetError(f"connection lost: {err}") from err
        self.sent += 1

    async def _watch(self, client: AsyncClient) -> None:
        """Read what the persona service says (only an `error` for a bad event) and notice when it
        closes the connection, so the next text connects again instead of being written into it."""
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            while (event := await client.read_event()) is not None:
                if event.type == "error":
                    _LOGGER.warning("Speculation link: the persona service says %s", event.data.get("text"))
        if self._client is client:
            self._client = None
            with contextlib.suppress(OSError, RuntimeError):
                await client.disconnect()

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if client is not None:
            with contextlib.suppress(OSError, RuntimeError):
                await client.disconnect()
