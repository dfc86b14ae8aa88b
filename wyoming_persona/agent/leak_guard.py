"""Keep the persona from speaking its own instructions.

Every speakable piece of a reply is screened before it reaches the client. A piece is dropped when it
repeats the system prompt (any run of `NGRAM` words in a row, also across the piece before it), talks
about its instructions ("my instructions are", "system prompt", "as an AI language model") or quotes the
old example scaffolding ('Asked "...", you say'). A first clause that ends in prompt words waits
for the rest of its sentence and is screened with it. A leading speaker label ("Captain Barnacle:",
"Assistant:") is cut off; a turn label for someone else ("User:", "System:", a chat-template token)
means the model started writing the transcript, so the reply ends there.

The example answers are not screened against: the model may reuse "matey" and "champ" freely.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

NGRAM = 6
"""Words in a row shared with the system prompt that make a piece a leak; no reply keeps this many."""
HOLD = 4
"""An unfinished clause ending in this many prompt words in a row (or made only of fewer, as a run
of the prompt: "You are Jeeves,") waits for the rest of its sentence."""

_WORD = re.compile(r"[a-z0-9]+")
_TURN_LABEL = re.compile(
    r"(?:^|[\s\"'(])(?:user|human|system)\s*:|<\|[^|>]*\|?>?|\[/?inst\]|###",
    re.IGNORECASE,
)
_SELF_TALK = re.compile(
    r"\b(?:system prompt|(?:my|these|those) (?:instructions|rules|prompt|guidelines)"
    r"|i (?:was|am|have been|'ve been) (?:instructed|programmed) to"
    r"|as an ai\b|language model|my programming|asked \"|you say:"
    # the model's own identity instead of the persona's ("I am Qwen, created by Alibaba Cloud")
    r"|i am an? (?:artificial intelligence|ai\b|large language)"
    r"|(?:created|developed|trained|made) by (?:openai|alibaba|anthropic|google|meta|microsoft|hugging ?face)"
    r"|i am (?:qwen|chatgpt|smollm))",
    re.IGNORECASE,
)
_SPEAKERS = ("assistant", "ai", "bot", "answer", "a", "reply", "response")


@dataclass(frozen=True)
class Verdict:
    """What to do with one piece: speak `text` ("" drops it); `stop` ends the reply after it."""

    text: str
    stop: bool = False

    def changed(self, piece: str) -> bool:
        return self.stop or self.text != piece


@dataclass(frozen=True)
class LeakGuard:
    """Built once per system prompt; `screen` is pure, so one guard serves every reply."""

    prompt_ngrams: frozenset[tuple[str, ...]]
    prompt_holds: frozenset[tuple[str, ...]]
    speaker: re.Pattern[str]

    @classmethod
    def build(cls, system_prompt: str, names: Iterable[str] = ()) -> LeakGuard:
        """`names` are the persona's name and aliases: a reply starting "Name:" has that label cut off."""
        labels = sorted({*(n.strip() for n in names if n.strip()), *_SPEAKERS}, key=len, reverse=True)
        speaker = re.compile(
            r"^\s*(?:" + "|".join(re.escape(label) for label in labels) + r")\s*:\s*", re.IGNORECASE
        )
        tokens = words(system_prompt)
        holds = frozenset(run for n in range(1, HOLD + 1) for run in ngrams(tokens, n))
        return cls(frozenset(ngrams(tokens)), holds, speaker)

    def suspect(self, clause: str) -> bool:
        """An unfinished clause that may be the start of a leak: screen it with what follows. A clause
        too short to tell ("You are Jeeves,") is suspect when all its words are a run of the prompt."""
        tail = tuple(words(clause)[-HOLD:])
        return bool(tail) and tail in self.prompt_holds

    def screen(self, piece: str, *before: str) -> Verdict:
        """Screen `piece`, a speakable chunk; each of `before` is text it follows (what this reply
        spoke, and what the model wrote including dropped pieces): a run of prompt words may span it."""
        text = self.speaker.sub("", piece, count=1).strip()
        stop = False
        if label := _TURN_LABEL.search(text):
            text, stop = text[: label.start()].strip(), True
        if not text or _SELF_TALK.search(text) or any(self.repeats_prompt(text, b) for b in before or ("",)):
            return Verdict("", stop)
        if text != piece.strip():
            text = text[0].upper() + text[1:]
        return Verdict(text, stop)

    def repeats_prompt(self, text: str, before: str = "") -> bool:
        """True if `text` (joined to the end of `before`) has NGRAM words in a row from the prompt."""
        tail = words(before)[-(NGRAM - 1) :]
        new = words(text)
        joined = tail + new
        first = max(0, len(tail) - NGRAM + 1)  # every n-gram that ends inside `text`
        return any(tuple(joined[i : i + NGRAM]) in self.prompt_ngrams for i in range(first, len(joined)))


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("'", ""))


def ngrams(tokens: list[str], n: int = NGRAM) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def longest_shared_run(reply: str, source: str) -> int:
    """The most words in a row that `reply` shares with `source` (for tests and reports)."""
    a, b = words(reply), words(source)
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best
