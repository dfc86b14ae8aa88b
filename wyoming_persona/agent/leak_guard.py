"""Keep the persona from speaking its own instructions.

Every speakable piece of a reply is screened before it reaches the client, against the persona's
prompt text: the system prompt as `build_system_prompt` makes it, that is the persona's identity,
style and rules lines plus the line every persona gets about speaking aloud ("Your words are spoken
aloud, so reply in English with one or two short sentences..."). That is what the model was told and
must not recite. Not screened against: the example turns (their words are the persona's voice, meant
to be reused: "matey", "champ"), the greeting and home lines (spoken by design), and a client's own
system text (Home Assistant's devices and areas: a reply says "the kitchen light").

A piece is dropped when
- it repeats the prompt: words in a row shared with it (also across the piece before) that weigh
  `LEAK_WEIGHT`, where a common word ("the", "you", "with", "one") weighs half and a run made only of
  common words never counts. "You still get the facts right" (two rare words in six) is an answer;
  "you talk like a pirate, with ahoy, matey" is a leak;
- it is self-talk in the first person: "my instructions", "as an AI, I", "I am a large language
  model", "I was created by OpenAI" (not "ChatGPT is a large language model made by OpenAI");
- it quotes the old example scaffolding ('Asked "...", you say:').
A first clause that ends in four prompt words in a row, opens a prompt sentence ("You are Jeeves,") or
is a speaker label alone waits for the rest of its sentence and is screened with it; a persona's own
interjection ("Aye,", "Certainly,") goes at once, though the prompt names it.
A leading speaker label ("Captain Barnacle:", "Assistant:") is cut off; a turn label for someone else
("User:", "System:") starting the piece or one of its sentences, or a chat-template token, means the
model started writing the transcript: the reply ends there. "The solar system: eight planets" has none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

NGRAM = 6
"""The fewest words in a row shared with the prompt that can be a leak."""
COMMON_WEIGHT = 0.5
"""What a common word adds to a run (a rarer word adds 1)."""
LEAK_WEIGHT = 5.0
"""A run of at least `NGRAM` prompt words weighing this much is a leak: four rare words in six, three
in seven, two in eight, one in nine; never a run of common words alone."""
HOLD = 4
"""An unfinished clause ending in this many prompt words in a row (or made only of fewer, as the
opening of a prompt sentence: "You are Jeeves,") waits for the rest of its sentence."""
SPAN = 16
"""Words of what came before a piece that a run may start in (a longer run was caught before)."""

_COMMON = """
    a about above after again against all also am an and any are as at be because been before being
    below between both but by can cannot could did do does doing down during each even every few for
    from further get gets got had has have having he her here hers herself him himself his how i if in
    into is it its itself just like me more most much my myself no nor not now of off on once one only
    or other our ours ourselves out over own same she should so some still such than that the their
    theirs them themselves then there these they this those through to too two under until up very was
    we well were what when where which while who whom why will with would yes you your yours yourself
    yourselves
    arent cant couldnt didnt doesnt dont hadnt hasnt havent hed hes id ill im isnt ive lets shed shes
    shouldnt thats theres theyd theyll theyre theyve wasnt wed weve werent whats whos wont wouldnt youd
    youll youre youve
"""
COMMON_WORDS = frozenset(_COMMON.split())
"""English function words and a few of the most frequent others, written as `words` splits them
("you've" -> "youve"). In a run shared with the prompt they weigh `COMMON_WEIGHT`."""


class Rule(StrEnum):
    """Why the guard changed a piece (the `rule` label of its counter)."""

    PROMPT = "prompt"
    SELF_TALK = "self_talk"
    TURN_LABEL = "turn_label"
    SPEAKER_LABEL = "speaker_label"


_WORD = re.compile(r"[a-z0-9]+")
_PROMPT_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n")
_SENTENCE_START = r"(?:^\s*|(?<=[.!?…])\s+|(?<=[.!?…][\"'”’)])\s+)[\"'“(]?\s*"
_TURN_LABEL = re.compile(
    _SENTENCE_START + r"(?:user|human|system)\s*:|<\|[^|>]*\|?>?|\[/?inst\]|###",
    re.IGNORECASE,
)
_I_AM = r"\bi(?:\s+am|\s*['’]m)\s+"
_AI = r"(?:ai|artificial\s+intelligence|(?:large\s+)?language\s+model|llm|chatbot|virtual\s+assistant)"
_AI_NOUN_END = (  # "I am an AI." / "an AI created by..." but not "an AI researcher"
    r"(?=\s*(?:[,.;:!?)]|$|(?:language\s+model|model|assistant|chatbot|program|system|created|developed"
    r"|trained|made|built|designed|from|by|and|so|that|who|which|with|here|myself|i)\b))"
)
_MAKERS = r"(?:openai|alibaba|anthropic|google|meta|microsoft|hugging\s?face|mistral)"
_MODELS = r"(?:qwen|chatgpt|smollm\d*|claude|gemini|llama|mistral)"
_SELF_TALK = re.compile(
    "|".join(
        (
            # what the model says about its own instructions
            r"\bmy\s+(?:system\s+prompt|prompt|instructions|guidelines|programming|creators?|developers?)\b",
            r"\b(?:here\s+is|here['’]s|reveal|share|repeat|print)\s+(?:you\s+)?(?:my|the|your)\s+"
            r"(?:system\s+prompt|instructions)\b",
            r"\b(?:the|your)\s+(?:system\s+prompt|instructions)\s+(?:says?|tells?|asks?|gives?|gave)\s+(?:me|i)\b",
            r"\bi\s+(?:was|am|have\s+been|['’]ve\s+been)\s+(?:instructed|programmed)\b",
            # the model's own identity instead of the persona's, in the first person only: "ChatGPT is
            # a large language model made by OpenAI" is an answer, and so is "as an AI researcher said"
            r"\bas\s+an?\s+"
            + _AI
            + r"(?:\s+(?:language\s+model|model|assistant|chatbot))?(?=\s*(?:[,.;:!?]|$|i\b))",
            _I_AM + r"(?:(?:just|only|simply|merely|actually)\s+)?an?\s+" + _AI + _AI_NOUN_END,
            r"\bi(?:\s+was|\s+am|['’]m|\s+have\s+been|['’]ve\s+been)\s+(?:[^.!?;]{0,40}?,\s*)?"
            r"(?:created|developed|trained|made|built|designed)\s+by\s+"
            r"(?:the\s+(?:team|engineers|researchers)\s+at\s+)?" + _MAKERS,
            # the old example scaffolding: 'Asked "What time is it?", you say: "Half past four."'
            r"^\s*asked\s*[\"“]",
            r"[\"”]\s*,?\s*you\s+say\s*:",
        )
    ),
    re.IGNORECASE,
)
_MODEL_NAME = re.compile(
    r"(?:" + _I_AM + r"(?:called\s+)?|\bmy\s+name\s+is\s+)(" + _MODELS + r")\b", re.IGNORECASE
)
"""The model's own name ("I am Qwen"), unless the persona has that name."""
_SPEAKERS = ("assistant", "ai", "bot", "answer", "a", "reply", "response")


@dataclass(frozen=True)
class Verdict:
    """What to do with one piece: speak `text` ("" drops it); `stop` ends the reply after it. `rule`
    says why the piece was changed and `evidence` is what it matched (a label, the prompt words)."""

    text: str
    stop: bool = False
    rule: Rule | None = None
    evidence: str = ""

    def changed(self, piece: str) -> bool:
        return self.stop or self.text != piece


@dataclass(frozen=True)
class LeakGuard:
    """Built once per system prompt; `screen` is pure, so one guard serves every reply."""

    prompt_words: tuple[str, ...]
    prompt_holds: frozenset[tuple[str, ...]]
    """Every run of `HOLD` prompt words."""
    prompt_openings: frozenset[tuple[str, ...]]
    """The first one to `HOLD` - 1 words of each prompt sentence: where a recital would start."""
    speaker: re.Pattern[str]
    names: frozenset[str] = frozenset()
    """The persona's names, lowercased: a persona called Claude may say "My name is Claude"."""

    @classmethod
    def build(cls, system_prompt: str, names: Iterable[str] = ()) -> LeakGuard:
        """`names` are the persona's name and aliases: a reply starting "Name:" has that label cut off."""
        labels = sorted({*(n.strip() for n in names if n.strip()), *_SPEAKERS}, key=len, reverse=True)
        speaker = re.compile(
            r"^\s*(?:" + "|".join(re.escape(label) for label in labels) + r")\s*:\s*", re.IGNORECASE
        )
        tokens = words(system_prompt)
        sentences = [words(sentence) for sentence in _PROMPT_SENTENCE.split(system_prompt)]
        openings = frozenset(tuple(sentence[:n]) for sentence in sentences for n in range(1, HOLD))
        names = frozenset(n.strip().lower() for n in names)
        return cls(tuple(tokens), frozenset(ngrams(tokens, HOLD)), openings, speaker, names)

    def suspect(self, clause: str) -> bool:
        """An unfinished clause that may be the start of a leak: screen it with what follows. A clause
        too short to tell is suspect when it opens a prompt sentence ("You are Jeeves,"), not when its
        words are merely the prompt's: "Aye," and "Certainly," are how a persona was told to talk, and
        waiting for the next clause would keep the reply's first words from the voice."""
        if (label := self.speaker.match(clause)) and not clause[label.end() :].strip():
            return True  # "Captain Barnacle:" alone: its sentence says whether the reply is a transcript
        said = words(clause)
        if len(said) >= HOLD:
            return tuple(said[-HOLD:]) in self.prompt_holds
        return bool(said) and tuple(said) in self.prompt_openings

    def screen(self, piece: str, *before: str) -> Verdict:
        """Screen `piece`, a speakable chunk; each of `before` is text it follows (what this reply
        spoke, and what the model wrote including dropped pieces): a run of prompt words may span it."""
        text, rule, evidence, stop = piece.strip(), None, "", False
        if speaker := self.speaker.match(text):
            text, rule, evidence = text[speaker.end() :].strip(), Rule.SPEAKER_LABEL, speaker.group().strip()
        if label := _TURN_LABEL.search(text):
            text, stop = text[: label.start()].strip(), True
            rule, evidence = Rule.TURN_LABEL, label.group().strip(" \"'“(")
        if not text:
            return Verdict("", stop, rule, evidence)
        if talk := _SELF_TALK.search(text) or self._model_name(text):
            return Verdict("", stop, Rule.SELF_TALK, talk.group().strip())
        for b in before or ("",):
            if run := self.leaked_run(text, b):
                return Verdict("", stop, Rule.PROMPT, " ".join(run))
        if text != piece.strip():
            text = text[0].upper() + text[1:]
        return Verdict(text, stop, rule, evidence)

    def _model_name(self, text: str) -> re.Match[str] | None:
        for found in _MODEL_NAME.finditer(text):
            if found.group(1).lower() not in self.names:
                return found
        return None

    def leaked_run(self, text: str, before: str = "") -> tuple[str, ...]:
        """The longest run of prompt words in a row that ends in `text` (and may start in `before`),
        is `NGRAM` words or longer and weighs `LEAK_WEIGHT`; () if there is none."""
        tail = words(before)[-SPAN:]
        joined = tail + words(text)
        prompt = self.prompt_words
        best: tuple[str, ...] = ()
        previous = [0] * (len(prompt) + 1)
        for i, word in enumerate(joined):
            current = [0] * (len(prompt) + 1)
            for j, prompt_word in enumerate(prompt, 1):
                if word != prompt_word:
                    continue
                length = current[j] = previous[j - 1] + 1
                if i >= len(tail) and length >= max(NGRAM, len(best) + 1):
                    run = tuple(joined[i - length + 1 : i + 1])
                    if run_weight(run) >= LEAK_WEIGHT:
                        best = run
            previous = current
        return best


def run_weight(run: Sequence[str]) -> float:
    """A run's weight as a leak: 1 per rare word, `COMMON_WEIGHT` per common one; 0 without a rare word."""
    common = sum(1 for word in run if word in COMMON_WORDS)
    if common == len(run):
        return 0.0
    return len(run) - common + common * COMMON_WEIGHT


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("'", "").replace("’", ""))


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
