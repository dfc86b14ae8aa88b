"""Fuzzing every Wyoming server with random and mutated frames (issue: "Never fail silently").

Each server runs once per module on a real socket with its real model (Silero, Whisper tiny.en, the
Piper joe voice, SmolLM2 through llama.cpp). A hypothesis case is a short sequence of events of the
server's own types (some valid, some with mutated fields, some out of order), foreign events, and
byte-level damage (bit flips, cuts, inserted bytes, lying lengths, oversized or non-JSON headers).
The case is sent on a new connection followed by a sentinel `ping`; the client half-closes and
reads until the server closes. What the case *should* cause comes from two oracles written from
the protocol notes: `wire.reference_decode` for the framing and a per-server state machine for the
meaning of each event. Every case must end without a crash (no ERROR log, no `internal` error, no
asyncio loop error) and without a hang (every read is under `asyncio.timeout`); bad input must get
an `error` event (bad events: and the connection stays; bad frames: or a closed connection); valid
input must be answered without an error; and `describe` on a new connection must still work.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from wyoming.event import Event

from wyoming_persona.agent.chat import ChatSettings, PersonaChat
from wyoming_persona.agent.handler import PersonaEventHandler, build_info
from wyoming_persona.agent.history import ConversationStore
from wyoming_persona.asr.handler import AsrEventHandler, AsrSettings
from wyoming_persona.asr.info import asr_info
from wyoming_persona.personas import PersonaManager
from wyoming_persona.tts.engine import NoiseSettings, TtsEngine
from wyoming_persona.tts.handler import ResponseSettings, TtsEventHandler
from wyoming_persona.tts.pool import VoicePool
from wyoming_persona.tts.voices import BUILTIN_VOICE, VoiceCatalog
from wyoming_persona.vad.handler import VadEventHandler, vad_info
from wyoming_persona.vad.segmenter import VadSettings
from wyoming_persona.wyoming_server import FrameLimits

from .conftest import CrashWatch, ThreadedServer, add_figures
from .wire import Decoded, Ending, Outcome, describe, encode, probe, reference_decode

pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parents[2]
LIMITS = FrameLimits()
MAX_EXAMPLES = {"vad": 300, "asr": 250, "tts": 60, "persona": 80}


def fuzz_settings(server: str) -> settings:
    """Reproducible in CI: derandomized, no example database, a fixed number of cases per server."""
    return settings(
        max_examples=MAX_EXAMPLES[server],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# == what a case should cause ======================================================================
class Verdict(StrEnum):
    OK = "ok"
    BAD = "bad"
    UNSURE = "unsure"
    """Outside the spec but tolerable (e.g. a falsy non-string language): no expectation."""


class Expect(StrEnum):
    CLEAN = "clean"
    """Answered normally: the sentinel comes back and no `error` is sent."""
    ERROR = "error"
    """A bad event: at least one `error`, and the connection stays (the sentinel comes back)."""
    ERROR_OR_CLOSE = "error-or-close"
    """A bad frame: an `error`, or the connection is closed before the sentinel is answered."""
    ANY = "any"
    """Only the universal checks (no crash, no hang, describe still works)."""


class Oracle:
    """A per-connection state machine judging each decoded event (describe/ping are always fine)."""

    own: frozenset[str] = frozenset()

    def judge(self, event: Event) -> Verdict:
        raise NotImplementedError


def expectation(decoded: Decoded, oracle: Oracle, nonce: str) -> Expect:
    if decoded.ending is Ending.BAD_FRAME:
        return Expect.ERROR_OR_CLOSE
    events = list(decoded.events)
    if not events or events[-1].type != "ping" or events[-1].data.get("text") != nonce:
        return Expect.ERROR_OR_CLOSE  # the sentinel was swallowed: it can never be answered
    bad = False
    for event in events[:-1]:
        if event.type in ("describe", "ping"):
            continue
        verdict = oracle.judge(event) if event.type in oracle.own else Verdict.BAD
        if verdict is Verdict.UNSURE:
            return Expect.ERROR if bad else Expect.ANY  # the state machine may be off from here on
        bad = bad or verdict is Verdict.BAD
    if decoded.lenient:
        return Expect.ANY
    return Expect.ERROR if bad else Expect.CLEAN


def _int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def audio_format(data: dict) -> tuple[int, int, int] | None:
    """The declared format if it is usable (the ranges the audio servers document)."""
    rate, width, channels = (data.get(key) for key in ("rate", "width", "channels"))
    if _int_in(rate, 1000, 384_000) and _int_in(width, 1, 4) and _int_in(channels, 1, 32):
        return rate, width, channels
    return None


class AudioOracle(Oracle):
    """audio-start / audio-chunk / audio-stop; after one bad event the rest of that stream is
    dropped quietly (one mistake, one error) until the next audio-start or audio-stop."""

    own = frozenset({"audio-start", "audio-chunk", "audio-stop"})

    def __init__(self) -> None:
        self.format: tuple[int, int, int] | None = None
        self.dropping = False

    def judge(self, event: Event) -> Verdict:
        if event.type == "audio-start":
            self.format = audio_format(event.data)
            self.dropping = self.format is None
            return Verdict.BAD if self.dropping else Verdict.OK
        if event.type == "audio-chunk":
            if self.dropping:
                return Verdict.OK
            if self.format is None or audio_format(event.data) != self.format:
                self.format, self.dropping = None, True
                return Verdict.BAD
            return Verdict.OK
        if self.dropping:  # audio-stop ends a dropped stream quietly
            self.dropping = False
            return Verdict.OK
        if self.format is None:
            return Verdict.BAD
        self.format = None
        return Verdict.OK


class AsrOracle(AudioOracle):
    own = AudioOracle.own | {"transcribe"}

    def __init__(self, languages: frozenset[str]) -> None:
        super().__init__()
        self.languages = languages

    def judge(self, event: Event) -> Verdict:
        if event.type != "transcribe":
            return super().judge(event)
        language = event.data.get("language")
        if language is None or language == "":
            return Verdict.OK
        if not isinstance(language, str):
            return Verdict.UNSURE if not language else Verdict.BAD
        base = language.replace("_", "-").split("-", 1)[0].lower()
        if not base:
            return Verdict.UNSURE
        return Verdict.OK if base in self.languages else Verdict.BAD


def spoken(text: str) -> bool | None:
    """Whether a voice would say anything (True: plain letters; None: unsure for exotic text)."""
    if not text.strip():
        return False
    if re.search(r"[A-Za-z0-9]", text) and text.isascii():
        return True
    return None


class TtsOracle(Oracle):
    own = frozenset({"synthesize", "synthesize-start", "synthesize-chunk", "synthesize-stop"})

    def __init__(self, personas: frozenset[str], voices: frozenset[str]) -> None:
        self.personas = personas
        self.voices = voices
        self.stream: list[str] | None = None

    def voice(self, data: dict) -> Verdict:
        voice = data.get("voice")
        if voice is None:
            return Verdict.OK
        if not isinstance(voice, dict):
            return Verdict.BAD
        if "name" not in voice:
            return Verdict.OK  # language only, or nothing: the active persona speaks
        name, speaker = voice["name"], voice.get("speaker")
        if name is not None and not isinstance(name, str):
            return Verdict.BAD
        if speaker is not None and (not isinstance(speaker, str | int) or isinstance(speaker, bool)):
            return Verdict.BAD  # wyoming: the speaker is a string (a speaker number is tolerated)
        if not name or name in self.personas or name == "active":
            return Verdict.OK  # the active persona, or a persona: its own speaker wins
        if name not in self.voices:
            return Verdict.BAD
        if speaker is None or speaker == "":
            return Verdict.OK
        if isinstance(speaker, str) and not speaker.isdigit():
            return Verdict.BAD  # the joe voice has no named speakers
        return Verdict.UNSURE

    def text(self, data: dict) -> Verdict | None:
        return None if isinstance(data.get("text"), str) else Verdict.BAD

    def judge(self, event: Event) -> Verdict:
        data = event.data
        if event.type == "synthesize":
            if self.stream is not None:
                return Verdict.OK  # the compat copy of a streamed request: ignored
            if (bad := self.text(data)) is not None:
                return bad
            if (voice := self.voice(data)) is not Verdict.OK:
                return voice
            return _spoken_verdict(data["text"])
        if event.type == "synthesize-start":
            if self.stream is not None:
                return Verdict.BAD
            verdict = self.voice(data)
            if verdict is not Verdict.BAD:
                self.stream = []
            return verdict
        if event.type == "synthesize-chunk":
            if self.stream is None:
                return Verdict.BAD
            if (bad := self.text(data)) is not None:
                return bad
            self.stream.append(data["text"])
            return Verdict.OK
        if self.stream is None:  # synthesize-stop
            return Verdict.BAD
        text, self.stream = "".join(self.stream), None
        return _spoken_verdict(text)


def _spoken_verdict(text: str) -> Verdict:
    said = spoken(text)
    return Verdict.UNSURE if said is None else Verdict.OK if said else Verdict.BAD


class PersonaOracle(Oracle):
    own = frozenset({"transcript"})

    def judge(self, event: Event) -> Verdict:
        if not isinstance(event.data.get("text"), str):
            return Verdict.BAD
        context = event.data.get("context")
        if context is None or isinstance(context, dict):
            return Verdict.OK
        return Verdict.UNSURE if not context else Verdict.BAD


# == strategies =====================================================================================
@dataclass(frozen=True)
class Frame:
    type: object
    data: object = field(default_factory=dict)
    payload: bytes = b""
    inline: bool = False
    """Data in the header's `data` key (the library reader accepts it) instead of its own section."""

    def encode(self) -> bytes:
        if self.inline and isinstance(self.data, dict) and self.data:
            return encode(self.type, None, self.payload, data=self.data)
        return encode(self.type, self.data, self.payload)


WEIRD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 3, 9, 2**31, 2**63, -(2**63), 16000.0]),
    st.floats(),
    st.text(max_size=12),
    st.lists(st.integers(-5, 5), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(-5, 5), max_size=2),
)
RATES = st.sampled_from([16000, 16000, 8000, 22050, 44100, 48000, 1000, 384000])
ODD_RATES = st.sampled_from([0, -16000, 1, 999, 384001, 2**40, 16000.0, True])
WIDTHS = st.sampled_from([2, 2, 1, 3, 4])
ODD_WIDTHS = st.sampled_from([0, 5, 8, -2, 2.0])
CHANNELS = st.sampled_from([1, 1, 2, 9, 32])
ODD_CHANNELS = st.sampled_from([0, 33, 1000, -1])
PCM = st.binary(max_size=2048)
WORDS = st.lists(
    st.sampled_from(["hello", "the", "lamp", "is", "on", "kitchen", "light", "what", "time", "it", "sea"]),
    min_size=1,
    max_size=6,
).map(" ".join)
PLAIN_TEXT = st.tuples(WORDS, st.sampled_from(["", ".", "!", "?", ", and more."])).map("".join)
ANY_TEXT = st.one_of(
    PLAIN_TEXT, st.text(max_size=24), st.sampled_from(["", "   ", "...", "?!", "🙂", "\ud800"])
)
ALL_TYPES = [
    "audio-start", "audio-chunk", "audio-stop", "transcribe", "transcript", "synthesize",
    "synthesize-start", "synthesize-chunk", "synthesize-stop", "describe", "ping", "info", "error",
    "voice-started", "handled", "not-handled", "run-pipeline", "detect",
]  # fmt: skip
FOREIGN = st.builds(
    Frame,
    st.one_of(st.sampled_from(ALL_TYPES), st.text(max_size=16)),
    st.dictionaries(st.text(max_size=6), WEIRD, max_size=3),
    st.binary(max_size=64),
)


@st.composite
def mutate_fields(draw: st.DrawFn, data: dict) -> dict:
    """Drop keys, give them values of the wrong type or size, or add unknown keys."""
    data = dict(data)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["drop", "set", "set", "add"]))
        if op != "add" and data:
            key = draw(st.sampled_from(sorted(data)))
            if op == "drop":
                del data[key]
            else:
                data[key] = draw(WEIRD)
        else:
            data[draw(st.text(max_size=8))] = draw(WEIRD)
    return data


@st.composite
def audio_data(draw: st.DrawFn, odd: bool = False) -> dict:
    fmt = {"rate": draw(RATES), "width": draw(WIDTHS), "channels": draw(CHANNELS)}
    if odd:
        key = draw(st.sampled_from(sorted(fmt)))
        fmt[key] = draw({"rate": ODD_RATES, "width": ODD_WIDTHS, "channels": ODD_CHANNELS}[key])
    if draw(st.booleans()):
        fmt["timestamp"] = draw(st.one_of(st.integers(0, 10**6), WEIRD))
    return fmt


def _maybe(strategy: st.SearchStrategy[dict]) -> st.SearchStrategy[dict]:
    """A field set as is, with one format field made odd, or with random field mutations."""
    return strategy.flatmap(lambda data: st.one_of(st.just(data), mutate_fields(data)))


def audio_frames() -> st.SearchStrategy[Frame]:
    start = st.builds(Frame, st.just("audio-start"), st.one_of(audio_data(), audio_data(odd=True)))
    chunk = st.builds(
        Frame, st.just("audio-chunk"), _maybe(st.one_of(audio_data(), audio_data(odd=True))), PCM
    )
    stop = st.builds(Frame, st.just("audio-stop"), st.one_of(st.just({}), _maybe(st.just({"timestamp": 5}))))
    return st.one_of(start, chunk, chunk, stop)


@st.composite
def audio_session(draw: st.DrawFn) -> list[Frame]:
    """A well-formed stream: audio-start, chunks of its format (odd byte counts too), audio-stop."""
    fmt = draw(audio_data())
    chunks = [Frame("audio-chunk", fmt, draw(PCM)) for _ in range(draw(st.integers(0, 4)))]
    stop = [Frame("audio-stop", {})] if draw(st.integers(0, 3)) else []
    return [Frame("audio-start", fmt), *chunks, *stop]


LANGUAGES = st.one_of(st.sampled_from([None, "en", "en-US", "en_us", "EN"]), st.text(max_size=6), WEIRD)
TRANSCRIBE = st.builds(
    Frame,
    st.just("transcribe"),
    _maybe(
        st.fixed_dictionaries(
            {"language": LANGUAGES},
            optional={"name": st.text(max_size=8), "vad_sensitivity": WEIRD, "context": WEIRD},
        )
    ),
)


@st.composite
def asr_session(draw: st.DrawFn) -> list[Frame]:
    language = draw(st.sampled_from([None, "en", "en-US"]))
    return [Frame("transcribe", {"language": language} if language else {}), *draw(audio_session())]


VOICES = st.one_of(
    st.none(),
    st.fixed_dictionaries({"name": st.sampled_from(["pirate", "butler", "active", BUILTIN_VOICE])}),
    st.fixed_dictionaries(
        {"name": st.one_of(st.sampled_from(["nobody", ""]), WEIRD)},
        optional={"speaker": st.one_of(st.sampled_from(["0", "bob", ""]), WEIRD)},
    ),
    st.fixed_dictionaries({"language": WEIRD}),
    WEIRD,
)


def _synth_data(text: st.SearchStrategy, voice: bool) -> st.SearchStrategy[dict]:
    fields = {"text": text}
    optional = {"voice": VOICES} if voice else {}
    return _maybe(st.fixed_dictionaries(fields, optional=optional))


def tts_frames() -> st.SearchStrategy[Frame]:
    return st.one_of(
        st.builds(Frame, st.just("synthesize"), _synth_data(ANY_TEXT, voice=True)),
        st.builds(
            Frame, st.just("synthesize-start"), _maybe(st.fixed_dictionaries({}, optional={"voice": VOICES}))
        ),
        st.builds(Frame, st.just("synthesize-chunk"), _synth_data(ANY_TEXT, voice=False)),
        st.builds(Frame, st.just("synthesize-stop"), st.one_of(st.just({}), mutate_fields({}))),
    )


@st.composite
def tts_session(draw: st.DrawFn) -> list[Frame]:
    voice = draw(st.sampled_from([None, "pirate", "active", BUILTIN_VOICE]))
    data = {"voice": {"name": voice}} if voice else {}
    if draw(st.booleans()):
        return [Frame("synthesize", {"text": draw(PLAIN_TEXT), **data})]
    chunks = [Frame("synthesize-chunk", {"text": draw(PLAIN_TEXT)}) for _ in range(draw(st.integers(1, 3)))]
    text = "".join(frame.data["text"] for frame in chunks)
    return [
        Frame("synthesize-start", data),
        *chunks,
        Frame("synthesize", {"text": text, **data}),
        Frame("synthesize-stop", {}),
    ]


CONTEXTS = st.one_of(
    st.none(), st.fixed_dictionaries({"conversation_id": st.one_of(st.text(max_size=8), WEIRD)}), WEIRD
)
TRANSCRIPT = st.builds(
    Frame,
    st.just("transcript"),
    _maybe(st.fixed_dictionaries({"text": ANY_TEXT}, optional={"context": CONTEXTS, "language": WEIRD})),
)
PERSONA_SESSION = st.builds(
    lambda text, conversation: [
        Frame("transcript", {"text": text, "context": {"conversation_id": conversation}})
    ],
    st.one_of(PLAIN_TEXT, st.sampled_from(["who are you", "", "switch to the pirate"])),
    st.sampled_from(["fuzz-a", "fuzz-b"]),
)


# -- byte-level damage -----------------------------------------------------------------------------
@st.composite
def damage(draw: st.DrawFn, frames: list[Frame]) -> bytes:
    """The case as bytes, maybe with one kind of damage to the bytes or to one frame's framing."""
    encoded = [frame.encode() for frame in frames]
    kind = draw(
        st.sampled_from(
            ["none", "none", "none", "flip", "cut", "splice", "insert", "length", "header", "section"]
        )
    )
    if kind in ("length", "header", "section"):
        index = draw(st.integers(0, len(frames) - 1))
        encoded[index] = draw(_damage_frame(frames[index], kind))
    blob = b"".join(encoded)
    if kind == "flip" and blob:
        pos = draw(st.integers(0, len(blob) - 1))
        blob = blob[:pos] + bytes([blob[pos] ^ (1 << draw(st.integers(0, 7)))]) + blob[pos + 1 :]
    elif kind == "cut" and blob:
        blob = blob[: draw(st.integers(0, len(blob) - 1))]
    elif kind == "splice" and blob:
        start = draw(st.integers(0, len(blob) - 1))
        blob = blob[:start] + blob[start + draw(st.integers(1, 64)) :]
    elif kind == "insert":
        pos = draw(st.integers(0, len(blob)))
        blob = blob[:pos] + draw(st.binary(min_size=1, max_size=16)) + blob[pos:]
    return blob


@st.composite
def _damage_frame(draw: st.DrawFn, frame: Frame, kind: str) -> bytes:
    body = json.dumps(frame.data).encode()
    if kind == "length":
        key = draw(st.sampled_from(["data_length", "payload_length"]))
        actual = len(body) if key == "data_length" else len(frame.payload)
        cap = LIMITS.max_data_bytes if key == "data_length" else LIMITS.max_payload_bytes
        lie = draw(
            st.one_of(
                st.integers(-3, 3).map(lambda k: actual + k),
                st.integers(cap + 1, 2**64),
                st.sampled_from([-1, None, "12", 1.5, True, [], {}]),
            )
        )
        return encode(frame.type, frame.data, frame.payload, **{key: lie})
    if kind == "section":
        section = draw(st.sampled_from([b"[1, 2]", b'"text"', b"\xff\xfe{", b"{'a': 1}", b"null", b"{}{}"]))
        return encode(frame.type, None, frame.payload, data_length=len(section)).replace(
            b"\n", b"\n" + section, 1
        )
    header = draw(
        st.one_of(
            st.binary(max_size=40).filter(lambda b: b"\n" not in b),
            st.sampled_from([b"[]", b'"ping"', b"{}", b'{"type": 5}', b'{"type": null}', b"\xc3\x28"]),
            st.text(max_size=10).map(
                lambda t: json.dumps({"type": t}, ensure_ascii=False).encode("utf-8", "replace")
            ),
            st.just(b'{"type": "' + b"x" * 70_000 + b'"}'),
        )
    )
    return header + b"\n" + body + frame.payload


@st.composite
def cases(
    draw: st.DrawFn, events: st.SearchStrategy[Frame], session: st.SearchStrategy[list[Frame]]
) -> bytes:
    """Random sequences (out of order, repeated, foreign) or a valid session, then maybe damage."""
    if draw(st.integers(0, 3)) == 0:
        frames = draw(session)
    else:
        frames = draw(st.lists(st.one_of(events, events, events, FOREIGN), min_size=1, max_size=6))
    frames = [Frame(f.type, f.data, f.payload, inline=draw(st.integers(0, 7)) == 0) for f in frames]
    return draw(damage(frames))


# == the harness ===================================================================================
@dataclass
class Tally:
    server: str
    cases: int = 0
    bytes_sent: int = 0
    frames: int = 0
    expected: dict[str, int] = field(default_factory=dict)
    error_events: int = 0
    closed: int = 0
    answered_clean: int = 0
    crashes: int = 0
    hung: int = 0
    describes: int = 0

    def line(self) -> str:
        expected = ", ".join(f"{k} {v}" for k, v in sorted(self.expected.items()))
        return (
            f"fuzz {self.server}: {self.cases} cases, {self.frames} frames decoded, {self.bytes_sent} bytes "
            f"({expected}); {self.error_events} error events returned, {self.closed} connections closed "
            f"by the server, {self.answered_clean} answered cleanly; crashes {self.crashes}, "
            f"hung {self.hung}; describe answered afterwards {self.describes}/{self.cases}"
        )


@dataclass
class Target:
    name: str
    server: ThreadedServer
    watch: CrashWatch
    oracle: Callable[[], Oracle]
    tally: Tally


def run_case(target: Target, blob: bytes) -> None:
    tally = target.tally
    nonce = f"sentinel-{tally.cases}"
    decoded = reference_decode(blob + encode("ping", {"text": nonce}), LIMITS)
    expect = expectation(decoded, target.oracle(), nonce)
    before = target.watch.count

    async def exchange() -> tuple[Outcome, Event]:
        outcome = await probe(target.server.port, blob, nonce)
        return outcome, await describe(target.server.port)

    outcome, info = asyncio.run(exchange())
    crashes = target.watch.since(before)
    internal = [e.data for e in outcome.errors if e.data.get("code") == "internal"]

    tally.cases += 1
    tally.bytes_sent += len(blob)
    tally.frames += sum(1 for e in decoded.events if not (e.type == "ping" and e.data.get("text") == nonce))
    tally.expected[expect.value] = tally.expected.get(expect.value, 0) + 1
    tally.error_events += len(outcome.errors)
    tally.closed += outcome.closed
    tally.answered_clean += outcome.answered and not outcome.errors
    tally.crashes += len(crashes) + len(internal)
    tally.hung += outcome.hung
    tally.describes += info.type == "info"

    seen = [(e.type, e.data.get("code")) for e in outcome.events if e.type in ("error", "pong")]
    assert not outcome.hung, f"{target.name}: the server neither answered nor closed: {blob[:200]!r}"
    assert not crashes and not internal, f"{target.name}: crash on {blob[:300]!r}: {crashes or internal}"
    assert info.type == "info"
    if expect is Expect.CLEAN:
        assert outcome.answered and not outcome.errors, f"valid input refused: {blob[:300]!r} -> {seen}"
    elif expect is Expect.ERROR:
        assert outcome.errors and outcome.answered, f"bad event not reported: {blob[:300]!r} -> {seen}"
    elif expect is Expect.ERROR_OR_CLOSE:
        assert outcome.errors or not outcome.answered, f"bad frame not reported: {blob[:300]!r} -> {seen}"


def _target(
    request: pytest.FixtureRequest,
    name: str,
    build: Callable[[], functools.partial],
    oracle: Callable[[], Oracle],
    watch: CrashWatch,
) -> Iterator[Target]:
    server = ThreadedServer(name, build, watch)
    tally = Tally(name)
    try:
        yield Target(name, server, watch, oracle, tally)
    finally:
        server.close()
        add_figures(request.config, tally.line())


def _personas(folder: Path, max_reply_tokens: int | None = None) -> Path:
    """The shipped personas; for the LLM, greedy and short so a case costs a fraction of a second."""
    shutil.copytree(REPO / "config" / "personas", folder)
    if max_reply_tokens is not None:
        for path in folder.glob("*.yaml"):
            text = re.sub(r"temperature: [0-9.]+", "temperature: 0.0", path.read_text())
            text = re.sub(r"max_reply_tokens: [0-9]+", f"max_reply_tokens: {max_reply_tokens}", text)
            path.write_text(text)
    return folder


@pytest.fixture(scope="module")
def vad(request, silero, crash_watch) -> Iterator[Target]:
    def build() -> functools.partial:
        return functools.partial(
            VadEventHandler, info=vad_info, limits=LIMITS, model=silero, settings=VadSettings()
        )

    yield from _target(request, "vad", build, AudioOracle, crash_watch)


@pytest.fixture(scope="module")
def asr(request, whisper, silero, crash_watch) -> Iterator[Target]:
    info = asr_info(whisper, endpointing=False)
    languages = frozenset(whisper.languages())

    def build() -> functools.partial:
        return functools.partial(
            AsrEventHandler,
            info=lambda: info,
            limits=LIMITS,
            transcriber=whisper,
            vad_model=silero,
            settings=AsrSettings(),
        )

    yield from _target(request, "asr", build, lambda: AsrOracle(languages), crash_watch)


@pytest.fixture(scope="module")
def tts(request, tmp_path_factory, piper_workers, crash_watch) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("tts-fuzz")
    manager = PersonaManager(_personas(root / "personas"), root / "state")
    catalog = VoiceCatalog()
    oracle_args = (frozenset(manager.personas), frozenset(catalog.voices()))

    def build() -> functools.partial:
        pool = VoicePool(2, worker_factory=piper_workers)
        engine = TtsEngine(catalog, manager, pool, NoiseSettings(0.0, 0.0))
        return functools.partial(TtsEventHandler, engine=engine, settings=ResponseSettings())

    yield from _target(request, "tts", build, lambda: TtsOracle(*oracle_args), crash_watch)


@pytest.fixture(scope="module")
def persona(request, tmp_path_factory, smollm2, crash_watch) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("persona-fuzz")
    manager = PersonaManager(_personas(root / "personas", max_reply_tokens=12), root / "state")

    def build() -> functools.partial:
        chat = PersonaChat(manager, smollm2, ConversationStore(), ChatSettings(timeout=30))
        info = functools.partial(build_info, manager, smollm2.name)
        return functools.partial(PersonaEventHandler, info=info, chat=chat)

    yield from _target(request, "persona", build, PersonaOracle, crash_watch)


# == the tests =====================================================================================
@fuzz_settings("vad")
@given(blob=cases(audio_frames(), audio_session()))
def test_vad_survives_random_and_mutated_frames(vad: Target, blob: bytes) -> None:
    run_case(vad, blob)


@fuzz_settings("asr")
@given(blob=cases(st.one_of(audio_frames(), TRANSCRIBE), asr_session()))
@example(blob=encode("transcribe", {"language": True}))  # was an AttributeError: internal error, close
@example(blob=encode("transcribe", {"language": ["en"]}))
def test_asr_survives_random_and_mutated_frames(asr: Target, blob: bytes) -> None:
    run_case(asr, blob)


@fuzz_settings("tts")
@given(blob=cases(tts_frames(), tts_session()))
# Each was an internal error (TypeError or AttributeError) that closed the connection:
@example(blob=encode("synthesize", {"text": "Hello there.", "voice": None}))
@example(blob=encode("synthesize", {"text": "Hello there.", "voice": {"name": ["pirate"]}}))
@example(blob=encode("synthesize-start", {"voice": {"name": BUILTIN_VOICE, "speaker": 1.5}}))
def test_tts_survives_random_and_mutated_frames(tts: Target, blob: bytes) -> None:
    run_case(tts, blob)


@fuzz_settings("persona")
@given(blob=cases(TRANSCRIPT, PERSONA_SESSION))
def test_persona_agent_survives_random_and_mutated_frames(persona: Target, blob: bytes) -> None:
    run_case(persona, blob)
