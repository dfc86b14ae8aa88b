"""Home Assistant's system message, kept as context after the persona's own prompt.

HA's Ollama integration opens every chat with its instructions: by default three generic lines that
make the model a plain "voice assistant for Home Assistant", then (with the Assist API) the tool
rules, the area and a YAML list of the exposed entities, or else the time and date. The persona
leads, so the generic lines go; everything about the home stays word for word.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

from ..home.request import Form, utterance_form
from .backends.base import ChatMessage

GENERIC_LINES = (
    "You are a voice assistant for Home Assistant.",
    "Answer questions about the world truthfully.",
    "Answer in plain text. Keep it simple and to the point.",
)
"""HA's DEFAULT_INSTRUCTIONS_PROMPT (helpers/llm.py), which would override the persona's character."""
HEADING = "About the home you serve (from Home Assistant; keep your own character and way of speaking):"
CLOSING = "That is all about the home."
"""Ends HA's context, before the persona's identity and way of speaking are said once more: under
HA's long context (about 1,800 tokens with the tools) qwen-1.5b answered plainly, out of character,
with the persona's prompt only at the start."""
_BLANK_RUNS = re.compile(r"\n{3,}")
_LISTED = re.compile(r"^\s*-?\s*(names|areas?|domain|floor):\s*(.+)$", re.MULTILINE)
_EVERY_LIST = ("names", "area", "areas", "domain", "floor")
HOME_WORDS = frozenset(
    re.findall(
        r"\w+",
        """light lights lamp lamps switch door doors garage lock locks thermostat heating heat
        temperature fan fans blinds cover covers window windows outlet plug timer alarm on off open
        close time date""",
    )
)
"""Words that make a question about the home even when it names no device of HA's list."""
_GENERIC = {" ".join(line.lower().split()) for line in GENERIC_LINES}


def closing(identity: str, style: Iterable[str], examples: Iterable[tuple[str, str]] = ()) -> str:
    """The lines that end HA's context: who the persona is and how it talks, again, with up to two of
    its example answers as text (as chat turns, with tools offered, a small model copies them and
    stops calling the tools: backends/tool_text.py)."""
    said = [f'Asked "{user}", you say "{answer}"' for user, answer in list(examples)[:2]]
    heard = f"For example: {'; '.join(said)}." if said else ""
    return " ".join(line.strip() for line in (CLOSING, identity, *style, heard) if line.strip())


def mentions_home(question: str, context: str) -> bool:
    """The question names a device, area or domain of HA's static context, or a word of the home."""
    words = _words(question)
    return bool(words & HOME_WORDS) or _names_listed(words, context, _EVERY_LIST)


LIVE_STATE_TOOL = "GetLiveContext"
DATE_TIME_TOOL = "GetDateTime"
READ_ONLY_TOOLS = frozenset({LIVE_STATE_TOOL, DATE_TIME_TOOL})
"""HA's tools that only read: the only ones a question (not a request) may call."""
_ASKS_DATE_TIME = re.compile(
    r"^(?:what(?:'s| is) (?:the )?(?:time|date|day)(?: is it)?(?: today| now)?|what time is it(?: now)?"
    r"|what day is (?:it|today)|what(?:'s| is) today's date)\W*$",
    re.IGNORECASE,
)


def look_first(question: str, context: str, tools: Iterable[str]) -> str | None:
    """The read-only tool a question needs answered before any words, if HA offered it: the time or
    date (GetDateTime), or the state of a device or area HA's context lists (GetLiveContext). Else None.

    Asked "Is the kitchen light on?", qwen-1.5b said "The kitchen light is on." without looking, and
    "The current time is [value from GetLiveContext]" for the time (bench/tool_calls.py): a home's
    state said wrong is worse than a reply a second later."""
    offered = set(tools)
    text = question.strip()
    if DATE_TIME_TOOL in offered and _ASKS_DATE_TIME.match(text):
        return DATE_TIME_TOOL
    asks = LIVE_STATE_TOOL in offered and utterance_form(text).form is Form.QUESTION
    if asks and _names_listed(_words(text), context, ("names", "area", "areas")):
        return LIVE_STATE_TOOL
    return None


_CLOCK = re.compile(r"^(?P<hour>[01]?\d|2[0-3]):(?P<minute>[0-5]\d)(?::[0-5]\d(?:\.\d+)?)?$")


def clock_said(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The messages with the time in HA's GetDateTime results as a voice says it ("03:07:12" ->
    "3:07 AM"); the rest of each result stays as HA wrote it.

    Through HA 2026.2.3, qwen-1.5b read HA's "time": "03:07:12" as "3:07 PM", twice. A tool message
    answers the calls of the assistant message before it, in order."""
    said: list[ChatMessage] = []
    calls: list[str] = []
    for message in messages:
        if message["role"] == "assistant":
            calls = [call["function"]["name"] for call in message.get("tool_calls", [])]
        elif message["role"] == "tool":
            answers = calls.pop(0) if calls else None
            if answers == DATE_TIME_TOOL:
                message = {**message, "content": _twelve_hour(message["content"])}
        said.append(message)
    return said


def _twelve_hour(content: str) -> str:
    try:
        data = json.loads(content)
    except ValueError:
        return content
    result = data.get("result") if isinstance(data, dict) else None
    time = result.get("time") if isinstance(result, dict) else None
    match = _CLOCK.match(time) if isinstance(time, str) else None
    if match is None:
        return content
    hour = int(match["hour"])
    spoken = f"{hour % 12 or 12}:{match['minute']} {'AM' if hour < 12 else 'PM'}"
    return json.dumps({**data, "result": {**result, "time": spoken}}, ensure_ascii=False)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _names_listed(words: set[str], context: str, kinds: tuple[str, ...]) -> bool:
    """All the words of a name listed in HA's static context under one of `kinds` are in `words`."""
    for kind, listed in _LISTED.findall(context):
        for name in listed.split(",") if kind in kinds else ():
            name_words = _words(name)
            if name_words and name_words <= words:
                return True
    return False


def device_context(system_texts: Iterable[str]) -> str:
    """The client's system messages minus HA's generic persona lines, under a heading; "" if nothing
    is left."""
    kept = []
    for text in system_texts:
        lines = [line for line in text.splitlines() if " ".join(line.lower().split()) not in _GENERIC]
        kept.append("\n".join(lines).strip())
    context = _BLANK_RUNS.sub("\n\n", "\n\n".join(part for part in kept if part))
    return f"{HEADING}\n{context}" if context else ""
