"""Did the user ask for something to be done? Judged from the form of the sentence, before any device.

A voice assistant that acts on a remark cannot be left alone in a home: "my neighbour's garage door is
open again" must not close ours, "I turned the kitchen light off myself" must not switch it. So a home
action needs a request - an imperative ("turn off the kitchen light"), a polite request ("could you
switch on the coffee machine?", "you can turn off the light now", "I'd like it at 20 degrees") or a
terse order ("kitchen light off") - and nothing that cancels it: a negation, the past tense, advice, a
hypothetical or a condition, a later time, someone else's device, quoted speech, or a "never mind"
after it. A question ("is the garage door open?") may be answered from the home's state but never acts.
Everything else is a remark, answered by the persona and never acted on.

The judge errs on the side of doing nothing: a missed command costs a repeat, a false one a garage door.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from .model import normalize_name


class Form(StrEnum):
    REQUEST = "request"
    """Asks for an action now: the home may act on it."""
    QUESTION = "question"
    """Asks how something is: answered from the home's state, never an action."""
    OTHER = "other"
    """A remark, a negation, the past, advice, a hypothetical, someone else's device: never an action."""


@dataclass(frozen=True)
class Judgement:
    form: Form
    reason: str
    """Why (for the debug log): "imperative", "negation 'don't'", "question 'was'", ..."""

    @property
    def acts(self) -> bool:
        return self.form is Form.REQUEST


ACTION_VERBS = frozenset(
    {
        "turn", "switch", "set", "open", "close", "shut", "dim", "brighten", "darken", "raise", "lower",
        "lift", "start", "stop", "toggle", "put", "make", "bring", "kill", "lock", "unlock", "increase",
        "decrease", "reduce", "change", "adjust", "activate", "deactivate", "enable", "disable", "run",
        "power", "crank", "bump", "drop", "pull", "roll", "move", "get", "give", "heat", "warm", "cool",
        "light", "flip", "boost", "arm", "disarm", "pause", "resume", "fire", "knock", "pump",
        "nudge", "kick", "flick", "pop",
    }
)  # fmt: skip
"""Verbs that open an imperative that changes a device ("turn ...", "get the coffee going")."""
_REQUEST_LEADS = re.compile(
    r"^(?:(?:would|do) you mind|(?:would|could|will) you be able to|do me a favou?r and"
    r"|(?:can|could|would|will) (?:you|u)(?: please| just| maybe| possibly| kindly)?"
    r"|if you (?:could|would|can|don't mind)"
    r"|(?:i want|i'd like|i would like|i need) you to|go ahead and"
    r"|you (?:can|could|may)(?: now| just)?|let's|let us|time to) "
)
"""Polite wrappers around an imperative: what follows must still be one ("could you tell me" is not)."""
_GET_LEADS = re.compile(r"^(?:can|could|may) (?:i|we) (?:get|have) ")
""""Can I get some light in the kitchen": a request that names its result, not a verb."""
_WANT = re.compile(
    r"^(?:i|we)(?: want| need| would like|'d like| wanna)"
    r" (?:the|my|our|all|some|more|less|it|them|everything|a bit|a little) "
)
"""A wish with a result ("I'd like it to be 20 degrees", "I want the lights off"), not "I want to know"."""
_LEAD_FILLER = re.compile(
    r"^(?:(?:hey|hi|ok|okay|so|um|uh|er|erm|oh|ah|and|now|alright|all right|right|well|please|kindly|"
    r"just|quickly|then|morning|good morning|evening|good evening|thanks|thank you|yes|yeah) )+"
)
_QUESTION_WORDS = frozenset(
    {
        "is", "are", "am", "do", "does", "did", "has", "have", "what", "what's", "whats", "which", "who",
        "who's", "whose", "how", "how's", "where", "where's", "when", "whether", "tell", "check", "any",
        "anything", "anyone", "anybody", "can", "could", "would", "will", "should", "shall", "may",
        "might", "must",
    }
)  # fmt: skip
"""A clause that starts with one of these asks something (unless a request lead matched first)."""
_PAST_QUESTION = frozenset({"was", "were", "had", "why", "why's", "whys"})
"""Questions about the past or about reasons: answered in words, never with a state or an action."""
_NEGATIONS = frozenset(
    {
        "not", "don't", "dont", "never", "no", "nothing", "neither", "nor", "won't", "wont", "can't",
        "cant", "cannot", "shouldn't", "wouldn't", "didn't", "doesn't", "isn't", "aren't", "wasn't",
        "weren't", "haven't", "hasn't", "mustn't", "needn't", "nobody", "without",
    }
)  # fmt: skip
_CONDITIONS = frozenset(
    {"if", "when", "whenever", "unless", "until", "once", "suppose", "supposing", "imagine", "assuming",
     "otherwise", "hypothetically", "pretend", "case"}
)  # fmt: skip
"""A clause with one of these is conditional or imagined: not an order for now."""
_LATER = re.compile(
    r"\b(?:later|tonight|tomorrow"
    r"|in (?:a|an|one|two|five|ten|twenty|thirty|\d+) (?:minutes?|hours?|mins?|secs?|seconds?)"
    r"|at (?:\d+(?: \d+)? ?(?:am|pm|o'clock|oclock)|noon|midnight)"
    r"|(?:this|tomorrow) (?:morning|afternoon|evening)|every (?:day|night|morning|evening))\b"
)
"""The action is for another time: Home Assistant is asked to act now, so this is not an order for now."""
_ADVICE = re.compile(
    r"^(?:(?:you|we|i|one) (?:should|ought|must|might|may want|could always)|(?:should|shall|ought) )\b"
)
_STATEMENT_STARTS = frozenset(
    {
        "i", "i'm", "im", "i've", "i'd", "i'll", "we", "we're", "we've", "we'd", "he", "he's", "she",
        "she's", "they", "they're", "it", "it's", "its", "there", "there's", "here", "here's", "this",
        "that", "that's", "these", "those", "someone", "somebody", "everyone", "everybody", "my", "our",
        "his", "her", "their", "your", "you", "you're", "mum", "mom", "dad", "the", "a", "an", "last",
        "yesterday", "earlier", "lovely", "wow", "oh", "ugh", "apparently", "honestly", "funny",
    }
)  # fmt: skip
"""How statements start; a terse order ("the kitchen light off") may start with "the" or "my": see below."""
_FINITE = frozenset(
    {"is", "are", "was", "were", "be", "been", "being", "has", "have", "had", "am", "does", "did"}
)
_CONTRACTED = re.compile(r"^\w+'(?:s|re|ve|m|d|ll)$")
_NOT_POSSESSIVE = frozenset(
    {"let's", "it's", "that's", "what's", "there's", "here's", "who's", "how's", "why's", "where's",
     "when's", "he's", "she's", "one's", "everything's"}
)  # fmt: skip
"""Words ending in 's that are "is" or "has", not someone's: "why's the light on", "it's dark"."""
_OTHERS = frozenset({"his", "her", "their", "your", "neighbour", "neighbours", "neighbor", "neighbors"})
_SPEECH_VERBS = re.compile(
    r"\b(?:says?|said|saying|shouts?|shouted|yells?|yelled|sings?|sang|singing|goes|told|tells|asks?"
    r"|asked|line|lyrics?|song|quote|quoted)$"
)
"""A clause ending so introduces the next one as someone's words: `my wife says, "put the coffee on"`."""
_PAST_VERB = re.compile(r"^\w{3,}(?:ed)$")
_NOT_PAST = frozenset({"need", "speed", "bed", "red", "shed", "feed", "seed", "heed", "breed", "hundred"})
_CANCEL = re.compile(
    r"^(?:no|nope|don't|do not|never ?mind|forget (?:it|that|i said anything)|cancel(?: that)?|wait|stop"
    r"|actually(?: no| don't| never ?mind)?|just kidding|kidding|scratch that|not now|leave it"
    r"|ignore (?:that|me))$"
)
"""A clause after an order that takes it back."""
_TERSE_STATES = re.compile(
    r"on|off|out|up|down|open|shut|dim|dimmer|brighter|darker|warmer|cooler|full|max|maximum|half|halfway"
    r"|percent|degrees?|brightness"
)
_TERSE_END = re.compile(rf"(?:\b(?:{_TERSE_STATES.pattern})|\bto \d+(?: \d+)?)(?: in (?:the )?[\w' ]+)?$")
""""Kitchen light off", "lights out in the bedroom", "thermostat to 18": the state ends the order."""
_TERSE_GLUE = frozenset({"to", "at", "in", "the", "a", "and", "please", "nice"})
_TERSE_START = re.compile(r"^(?:full|max|maximum|half|everything|all|lights) ")
""""Full brightness in the living room", "everything off in the kitchen"."""
_TERSE_TAIL = re.compile(r"(?: (?:please|thanks|thank you|now|right now|for me|quickly|again))+$")
_KEEP = frozenset({"leave", "keep", "let"})
"""An order to change nothing ("leave the light on"): nothing to do."""
_EXCEPT = re.compile(r"\b(?:except|excluding|apart from|other than|but not|besides|but leave)\b")
""""Turn off every light except the kitchen": Home Assistant cannot leave one out, so nothing is done."""
_QUOTES = ('"', "“", "”", "«", "»")
_POLITE_IF = re.compile(r"^if you (?:could|would|can|don't mind) ")
_ELSEWHERE = re.compile(
    r"\b(?:at (?:work|the office|school|the cottage|grandma's|my \w+)|in the car|next door)\b"
)
"""Places that are not this home: "the coffee machine at the office"."""


_EMBEDDED = re.compile(
    r"^(?:(?:can|could|would|will) you |please )?"
    r"(?:check|see|tell me|find out|let me know|look|do you know|any idea)(?: for me)? (?:if|whether) "
    r"(?P<subject>.+?) (?P<verb>is|are) (?P<rest>\w.*)$"
)


def embedded_question(text: str) -> str | None:
    """The state question inside a request to find out: "Can you check if the garage door is closed?"
    -> "is the garage door closed" (its "if" asks; it is no condition). None for anything else."""
    found = _EMBEDDED.match(_LEAD_FILLER.sub("", normalize_name(_spelled(text))))
    return f"{found['verb']} {found['subject']} {found['rest']}" if found else None


def judge(text: str) -> Judgement:
    """The form of one clause (or a whole utterance whose first clause decides)."""
    if any(mark in text for mark in _QUOTES):
        return Judgement(Form.OTHER, "quoted speech")
    asked = text.rstrip().endswith("?")
    words = _LEAD_FILLER.sub("", normalize_name(_spelled(text)))
    if not words:
        return Judgement(Form.OTHER, "no words")
    tokens = words.split()
    if found := next((t for t in tokens if t in _NEGATIONS), None):
        return Judgement(Form.OTHER, f"negation {found!r}")
    found = next((t for t in tokens if t in _CONDITIONS), None)
    if found and not _POLITE_IF.match(words):
        return Judgement(Form.OTHER, f"condition {found!r}")
    if found := _EXCEPT.search(words):
        return Judgement(Form.OTHER, f"an exception {found.group()!r}")
    if found := _LATER.search(words):
        return Judgement(Form.OTHER, f"another time {found.group()!r}")
    if found := _others(tokens):
        return Judgement(Form.OTHER, f"someone else's {found!r}")
    if _ADVICE.match(words):
        return Judgement(Form.OTHER, "advice")
    if tokens[0] in _PAST_QUESTION:
        return Judgement(Form.OTHER, f"question about the past {tokens[0]!r}")
    core = _REQUEST_LEADS.sub("", words, count=1)
    polite = core != words
    if _GET_LEADS.match(words) or _WANT.match(words):
        return _without_past(tokens, Judgement(Form.REQUEST, "a wish for a result"))
    first = _base_verb(core.split()[0]) if core else ""
    if first in _KEEP:
        return Judgement(Form.OTHER, f"keep as it is {first!r}")
    if first in ACTION_VERBS:
        return _without_past(
            core.split()[1:], Judgement(Form.REQUEST, "polite request" if polite else "imperative")
        )
    if polite:  # "could you tell me the temperature": a question, however it is put
        return Judgement(Form.QUESTION, f"a request to {first!r}, not an action")
    if first in _QUESTION_WORDS or (
        first.startswith(("what", "how", "who", "where")) and not first.endswith("ever")
    ):
        return Judgement(Form.QUESTION, f"question {first!r}")
    if asked:
        return Judgement(Form.QUESTION, "question mark")
    return _terse(tokens)


def judge_utterance(clauses: list[str], index: int) -> Judgement:
    """The form of `clauses[index]` within its utterance: what comes before or after may cancel it.

    A condition or someone's words before it ("if it gets cold, ...", "he said, ...") make an order
    no order and a question one about the imagined, not about the home now; a take-back after an
    order ("..., no, never mind") cancels it."""
    own = judge(clauses[index])
    if own.form is Form.OTHER:
        return own
    for before in clauses[:index]:
        words = normalize_name(before)
        if words.split()[:1] and (words.split()[0] in _CONDITIONS or words.startswith("what if ")):
            return Judgement(Form.OTHER, f"after a condition {before!r}")
        if _SPEECH_VERBS.search(words):
            return Judgement(Form.OTHER, f"someone's words after {before!r}")
    if own.acts:
        for after in clauses[index + 1 :]:
            if _CANCEL.match(_LEAD_FILLER.sub("", normalize_name(after))):
                return Judgement(Form.OTHER, f"taken back by {after!r}")
    return own


def utterance_form(text: str) -> Judgement:
    """The most a whole utterance asks for: a request in any clause, else a question, else nothing.

    For the LLM's function calls, which do not say which words they acted on: an action needs a
    request among the user's own words, a state answer a question."""
    parts = split_clauses(text) or [text]
    judgements = [judge_utterance(parts, index) for index in range(len(parts))]
    for form in (Form.REQUEST, Form.QUESTION):
        if found := next((j for j in judgements if j.form is form), None):
            return found
    return judgements[0]


def split_clauses(text: str) -> list[str]:
    """The utterance's clauses, as the user said them (punctuation kept for `judge`)."""
    return [part.strip() for part in _CLAUSE_BREAK.split(text) if part.strip()]


_CLAUSE_BREAK = re.compile(r"(?<=[,;.!?])\s+|\s+(?=(?:so|and then)\s)")


def _terse(tokens: list[str]) -> Judgement:
    """ "Kitchen light off", "heating to 17.5", "full brightness in the living room": an order with no
    verb. It has a state word and no verb of its own ("the kitchen light's off" is a remark)."""
    if tokens[0] in _STATEMENT_STARTS - {"the", "my", "our", "all", "every"}:
        return Judgement(Form.OTHER, f"statement {tokens[0]!r}")
    verb = next(
        (t for t in tokens if t in _FINITE or (_CONTRACTED.match(t) and t not in _NOT_POSSESSIVE)), None
    )
    if verb is not None:
        return Judgement(Form.OTHER, f"statement {verb!r}")
    if past := _past(tokens):
        return Judgement(Form.OTHER, f"past {past!r}")
    words = _TERSE_TAIL.sub("", " ".join(tokens))
    things = [t for t in words.split() if not (_TERSE_STATES.fullmatch(t) or t in _TERSE_GLUE or t.isdigit())]
    if things and (_TERSE_END.search(words) or _TERSE_START.match(words)):
        return Judgement(Form.REQUEST, "terse order")
    return Judgement(Form.OTHER, "no request")


def _base_verb(word: str) -> str:
    """ "turning" -> "turn", "closing" -> "close", "dimming" -> "dim" (after "would you mind")."""
    if not word.endswith("ing") or len(word) < 6:
        return word
    stem = word[:-3]
    for verb in (stem, f"{stem}e", stem[:-1]):
        if verb in ACTION_VERBS:
            return verb
    return word


def _spelled(text: str) -> str:
    """ "20%" and "22°" as words, which the normalisation would drop."""
    return text.replace("%", " percent").replace("°", " degrees")


def _without_past(tokens: list[str], judgement: Judgement) -> Judgement:
    past = _past(tokens)
    return Judgement(Form.OTHER, f"past {past!r}") if past else judgement


def _past(tokens: list[str]) -> str | None:
    """A past-tense verb ("turned", "switched"): "switched off the light" reports, it does not ask."""
    for token in tokens:
        if _PAST_VERB.match(token) and token not in _NOT_PAST and not token.endswith("eed"):
            return token
    return None


def _others(tokens: list[str]) -> str | None:
    """Someone else's device ("my neighbour's garage door", "her lamp"), or a place that is not ours."""
    for index, token in enumerate(tokens):
        if token in _OTHERS:
            return token
        if token.endswith(("'s", "s'")) and token not in _NOT_POSSESSIVE and index + 1 < len(tokens):
            owner = token[:-2] if token.endswith("'s") else token[:-1]
            if owner not in ("house", "home", "room"):
                return token
    found = _ELSEWHERE.search(" ".join(tokens))
    return found.group() if found else None
