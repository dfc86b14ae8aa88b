"""Whole responses already spoken, kept by voice, voice settings and text: a small bounded cache.

The persona service speaks a speculative reply ahead (agent/speculation.py), streaming its text in as
the LLM writes it. When Home Assistant then asks for the same text in the same voice, the response is
replayed from here: the same audio events, the same bytes, instead of being synthesized again. A
response still being spoken is followed as its audio arrives, so a request that comes during the
speech ahead waits for nothing more than the speech itself.

Every response is recorded; it is findable once its whole text is known (a streamed request's text at
its synthesize-stop). The key is everything the audio depends on: the voice's files, the
`VoiceSettings` (speaker, speed, pitch, volume, noise) and the text without invisible characters (the
persona mark). Piper's noise makes two syntheses of one text differ, so a replayed response is exactly
the audio of the synthesis that made it.
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections import OrderedDict
from collections.abc import AsyncIterator, Hashable

from wyoming.event import Event

from .voices import VoiceFile
from .worker import VoiceSettings

DEFAULT_MAX_MIB = 16.0
"""About six minutes of 22 kHz speech."""


class Recording:
    """The audio events of one response, as they were written."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.done = False
        self.failed = False
        self._changed = asyncio.Event()

    @property
    def size(self) -> int:
        return sum(len(event.payload or b"") for event in self.events)

    def add(self, event: Event) -> None:
        """Note an event the response wrote; whoever follows it is woken."""
        self.events.append(event)
        self._wake()

    def end(self, failed: bool = False) -> None:
        self.done, self.failed = True, failed
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def follow(self) -> AsyncIterator[Event]:
        """Every event so far, then each as it comes, until the response ends (RuntimeError if it fails)."""
        sent = 0
        while True:
            if len(self.events) == sent and not self.done:
                await self._changed.wait()
                continue
            new, done, failed = self.events[sent:], self.done, self.failed
            for event in new:
                yield event
            sent += len(new)
            if failed:
                raise RuntimeError("the response this request follows failed")
            if done and sent == len(self.events):
                return


def speech_key(voice: VoiceFile, settings: VoiceSettings, text: str) -> Hashable:
    """Everything a response's audio depends on; invisible characters and outer spaces do not count."""
    visible = "".join(char for char in text if unicodedata.category(char) != "Cf").strip()
    return (str(voice.model_path), str(voice.config_path), settings, visible)


class SpeechCache:
    """Recordings by key; the least recently used whole ones go past `max_bytes`."""

    def __init__(self, max_bytes: int = int(DEFAULT_MAX_MIB * 2**20)) -> None:
        self.max_bytes = max_bytes
        self.hits = 0
        """Responses replayed (whole, or followed while being spoken)."""
        self._entries: OrderedDict[Hashable, Recording] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        return sum(recording.size for recording in self._entries.values() if recording.done)

    def find(self, key: Hashable) -> Recording | None:
        recording = self._entries.get(key)
        if recording is None or recording.failed:
            return None
        self._entries.move_to_end(key)
        return recording

    def keep(self, key: Hashable, recording: Recording) -> None:
        """Make a recording findable by its key (its text is whole now; it may still be spoken)."""
        self._entries[key] = recording
        self._entries.move_to_end(key)
        self.evict()

    def evict(self) -> None:
        """Drop failed ones, then the least recently used whole ones until the rest fit."""
        for key in [k for k, r in self._entries.items() if r.failed]:
            del self._entries[key]
        size = self.size
        for key, recording in list(self._entries.items()):
            if size <= self.max_bytes:
                return
            if recording.done:
                del self._entries[key]
                size -= recording.size
