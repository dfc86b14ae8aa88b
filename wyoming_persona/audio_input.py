"""One client's audio-start / audio-chunk... / audio-stop sequence, validated and converted to 16 kHz mono.

Shared by the VAD and ASR handlers. A bad stream (chunk before start, a chunk whose format differs from
its audio-start, an unusable format) raises ClientError once; the rest of that stream is then dropped
quietly until the next audio-start, so one mistake gives one `error` and one log line, not hundreds.
"""

from __future__ import annotations

import logging

from wyoming.event import Event

from .audio import RATE, AudioChunk, AudioFormatError, AudioStart, PcmFormat, StreamConverter
from .wyoming_server import ClientError

_LOGGER = logging.getLogger(__name__)


class AudioInput:
    """Tracks the open stream of one connection."""

    def __init__(self) -> None:
        self.format: PcmFormat | None = None
        self.start_ms = 0
        self.samples = 0  # 16 kHz samples delivered so far in this stream
        self._converter: StreamConverter | None = None
        self._dropping = False

    @property
    def is_open(self) -> bool:
        return self.format is not None

    @property
    def dropping(self) -> bool:
        """True while the rest of a rejected stream is being ignored."""
        return self._dropping

    def start(self, event: Event) -> None:
        """Open a stream (an audio-start while one is open restarts it)."""
        self.close()
        try:
            start = AudioStart.from_event(event)
            fmt = PcmFormat.of(start)
        except (KeyError, TypeError, AudioFormatError) as err:
            self._dropping = True
            raise ClientError(f"bad audio-start: {_describe(err)}", "bad-audio") from err
        self.format = fmt
        self.start_ms = start.timestamp if isinstance(start.timestamp, int) else 0
        self._converter = StreamConverter(fmt)

    def chunk(self, event: Event) -> bytes | None:
        """16 kHz mono s16 PCM of an audio-chunk; None while a rejected stream is being dropped."""
        if self._dropping:
            return None
        if self.format is None or self._converter is None:
            self._dropping = True
            raise ClientError("audio-chunk before audio-start", "no-audio-start")
        try:
            chunk = AudioChunk.from_event(event)
            fmt = PcmFormat.of(chunk)
        except (KeyError, TypeError, AudioFormatError) as err:
            self._fail()
            raise ClientError(f"bad audio-chunk: {_describe(err)}", "bad-audio") from err
        if fmt != self.format:
            text = f"audio-chunk format {_show(fmt)} differs from audio-start {_show(self.format)}"
            self._fail()
            raise ClientError(text, "format-mismatch")
        pcm = self._converter.convert(chunk.audio or b"")
        self.samples += len(pcm) // 2
        return pcm

    def stop(self) -> bool:
        """Close the stream; True if a healthy stream was open."""
        was_open = self.is_open
        self.close()
        self._dropping = False
        return was_open

    def close(self) -> None:
        self.format = None
        self._converter = None
        self.samples = 0
        self._dropping = False

    def fail(self) -> None:
        """Abandon the current stream; its remaining events are dropped quietly."""
        self._fail()

    def _fail(self) -> None:
        self.close()
        self._dropping = True

    @property
    def seconds(self) -> float:
        return self.samples / RATE


def _describe(err: Exception) -> str:
    if isinstance(err, KeyError):
        return f"missing field {err}"
    return str(err)


def _show(fmt: PcmFormat) -> str:
    return f"{fmt.rate} Hz/{fmt.width * 8} bit/{fmt.channels} ch"
