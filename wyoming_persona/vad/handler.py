"""The VAD server's per-connection handler: audio in, voice-started / voice-stopped out.

Timestamps are milliseconds of audio since the stream's audio-start (plus that event's own timestamp,
if it carried one). Describe: wyoming's Info has no VAD section, so this server answers with an empty
Info rather than pretend to be an ASR or wake-word program that Home Assistant would then try to use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from wyoming.event import Event
from wyoming.info import Info
from wyoming.vad import VoiceStarted, VoiceStopped

from ..audio import AudioChunk, AudioStart, AudioStop, pcm_to_float
from ..audio_input import AudioInput
from ..wyoming_server import ClientError, FrameLimits, WyomingService
from .segmenter import VadEvent, VadEventKind, VadSettings, VoiceActivityDetector
from .silero import SileroModel


def vad_info() -> Info:
    return Info()


class VadEventHandler(WyomingService):
    """One connection: any number of audio streams, each with any number of utterances."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        info: Callable[[], Info],
        limits: FrameLimits,
        *,
        model: SileroModel,
        settings: VadSettings,
    ) -> None:
        super().__init__(reader, writer, info, limits)
        self.model = model
        self.settings = settings
        self.audio = AudioInput()
        self.vad: VoiceActivityDetector | None = None

    async def handle_event(self, event: Event) -> bool:
        if AudioChunk.is_type(event.type):
            pcm = self.audio.chunk(event)
            if pcm and self.vad is not None:
                await self._send(await asyncio.to_thread(self.vad.process, pcm_to_float(pcm)))
            return True
        if AudioStart.is_type(event.type):
            self.vad = None
            self.audio.start(event)
            self.vad = VoiceActivityDetector(self.model, self.settings)
            return True
        if AudioStop.is_type(event.type):
            if self.audio.dropping:
                self.audio.stop()
                return True
            if not self.audio.stop() or self.vad is None:
                raise ClientError("audio-stop without audio-start", "no-audio-start")
            vad, self.vad = self.vad, None
            await self._send(await asyncio.to_thread(vad.finish))
            return True
        raise self.unexpected(event)

    async def _send(self, events: list[VadEvent]) -> None:
        for vad_event in events:
            timestamp = self.audio.start_ms + vad_event.milliseconds
            if vad_event.kind is VadEventKind.STARTED:
                self.log.debug("Connection %s: voice started at %s ms", self.connection_id, timestamp)
                await self.write_event(VoiceStarted(timestamp=timestamp).event())
            else:
                self.log.debug("Connection %s: voice stopped at %s ms", self.connection_id, timestamp)
                await self.write_event(VoiceStopped(timestamp=timestamp).event())
