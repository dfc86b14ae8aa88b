"""Raw Wyoming frames for the reliability tests: encoding, a reference decoder, and a probing client.

The reference decoder is written from the protocol notes (header line, `data_length` bytes of JSON
object, `payload_length` bytes of payload), independently of `wyoming_server.read_frame`. The fuzz
tests use it as the oracle for what a byte stream means, so the server's framing is checked against
the specification rather than against itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from enum import StrEnum

from wyoming.event import Event, async_read_event

from wyoming_persona.wyoming_server import FrameLimits

HOST = "127.0.0.1"
CASE_TIMEOUT = 60.0
"""Seconds one fuzz case may take from connect to the server's close (a hang fails the case)."""
DESCRIBE_TIMEOUT = 30.0
CLIENT_LIMIT = 4 * 1024 * 1024
"""Reader buffer of the probing client: error texts may quote a long event type."""


def encode(event_type: object, section: object = None, payload: bytes = b"", **header: object) -> bytes:
    """One frame as the wyoming library writes it (`section`: the data after the header line);
    `header` adds or overrides header keys, e.g. an inline `data` or a lying `data_length`."""
    body = b"" if section is None else json.dumps(section).encode()
    head: dict[str, object] = {
        "type": event_type,
        "version": "1.10.2",
        "data_length": len(body),
        "payload_length": len(payload),
    }
    head.update(header)
    return json.dumps(head).encode() + b"\n" + body + payload


# -- reference decoder ------------------------------------------------------------------------------
class Ending(StrEnum):
    EOF = "eof"
    """The stream ended cleanly between frames."""
    MID_FRAME = "mid-frame"
    """The stream ended inside a frame (the peer gave up; nothing to answer)."""
    BAD_FRAME = "bad-frame"
    """A frame breaks the framing rules: the server must answer `error` and close."""


@dataclass(frozen=True)
class Decoded:
    events: tuple[Event, ...]
    ending: Ending
    lenient: bool = False
    """A frame used a value the spec does not allow but a server may tolerate (e.g. data_length false)."""


def reference_decode(blob: bytes, limits: FrameLimits) -> Decoded:
    """Split a byte stream into events the way the protocol notes define it."""
    events: list[Event] = []
    lenient = False
    pos = 0
    while pos < len(blob):
        newline = blob.find(b"\n", pos)
        if newline < 0:
            if len(blob) - pos > limits.max_header_bytes:
                return Decoded(tuple(events), Ending.BAD_FRAME, lenient)
            return Decoded(tuple(events), Ending.MID_FRAME, lenient)
        line = blob[pos : newline + 1]
        pos = newline + 1
        if len(line) > limits.max_header_bytes:
            return Decoded(tuple(events), Ending.BAD_FRAME, lenient)
        try:
            header = json.loads(line)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            return Decoded(tuple(events), Ending.BAD_FRAME, lenient)
        if not isinstance(header, dict) or not isinstance(header.get("type"), str):
            return Decoded(tuple(events), Ending.BAD_FRAME, lenient)
        data, odd = _inline_data(header.get("data"))
        data_length = _length(header.get("data_length"), limits.max_data_bytes)
        payload_length = _length(header.get("payload_length"), limits.max_payload_bytes)
        if data is None or data_length is None or payload_length is None:
            return Decoded(tuple(events), Ending.BAD_FRAME, lenient)
        lenient = lenient or odd or data_length.lenient or payload_length.lenient
        data_length, payload_length = data_length.value, payload_length.value
        if data_length:
            if pos + data_length > len(blob):
                return Decoded(tuple(events), Ending.MID_FRAME, lenient)
            section = blob[pos : pos + data_length]
            pos += data_length
            try:
                extra = json.loads(section)
            except ValueError:
                return Decoded(tuple(events), Ending.BAD_FRAME, lenient)
            if not isinstance(extra, dict):
                return Decoded(tuple(events), Ending.BAD_FRAME, lenient)
            data.update(extra)
        payload = None
        if payload_length:
            if pos + payload_length > len(blob):
                return Decoded(tuple(events), Ending.MID_FRAME, lenient)
            payload = blob[pos : pos + payload_length]
            pos += payload_length
        events.append(Event(header["type"], data, payload))
    return Decoded(tuple(events), Ending.EOF, lenient)


def _inline_data(value: object) -> tuple[dict | None, bool]:
    """(data, lenient): a missing/null inline `data` is {}, another falsy value is tolerated."""
    if value is None:
        return {}, False
    if isinstance(value, dict):
        return dict(value), False
    if not value:
        return {}, True
    return None, False


@dataclass(frozen=True)
class _Length:
    value: int
    lenient: bool = False


def _length(value: object, cap: int) -> _Length | None:
    """A length field; None if the frame is bad. Null is 0; another falsy value is a tolerated 0."""
    if value is None:
        return _Length(0)
    if isinstance(value, int) and not isinstance(value, bool):
        return _Length(value) if 0 <= value <= cap else None
    if not value:  # false, 0.0, "", [] or {}: not a length, but "absent" to a lenient reader
        return _Length(0, lenient=True)
    return None


# -- probing client ---------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What the server did with one fuzz case."""

    events: list[Event] = field(default_factory=list)
    answered: bool = False
    """The sentinel ping after the case came back as a pong: the connection survived it."""
    reset: bool = False
    hung: bool = False

    @property
    def errors(self) -> list[Event]:
        return [event for event in self.events if event.type == "error"]

    @property
    def closed(self) -> bool:
        """The server closed the connection before answering the sentinel."""
        return not self.answered and not self.hung


async def probe(port: int, blob: bytes, nonce: str) -> Outcome:
    """Send `blob` and a sentinel ping, half-close, and read everything until the server closes."""
    outcome = Outcome()
    try:
        async with asyncio.timeout(CASE_TIMEOUT):
            reader, writer = await asyncio.open_connection(HOST, port, limit=CLIENT_LIMIT)
            try:
                try:
                    writer.write(blob + encode("ping", {"text": nonce}))
                    await writer.drain()
                    writer.write_eof()
                except ConnectionError:
                    outcome.reset = True
                while True:
                    try:
                        event = await async_read_event(reader)
                    except ConnectionError:
                        outcome.reset = True
                        break
                    if event is None:
                        break
                    outcome.events.append(event)
                    if event.type == "pong" and event.data.get("text") == nonce:
                        outcome.answered = True
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
    except TimeoutError:
        outcome.hung = True
    return outcome


async def describe(port: int) -> Event:
    """`describe` on a new connection; the first `info` event (fails on timeout or close)."""
    async with asyncio.timeout(DESCRIBE_TIMEOUT):
        reader, writer = await asyncio.open_connection(HOST, port, limit=CLIENT_LIMIT)
        try:
            writer.write(encode("describe"))
            await writer.drain()
            while True:
                event = await async_read_event(reader)
                if event is None:
                    raise AssertionError("the server closed a new connection instead of answering describe")
                if event.type == "info":
                    return event
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
