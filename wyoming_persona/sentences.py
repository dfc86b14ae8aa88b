"""Where sentences and their first clause end, in whole or streamed text.

One set of rules for the persona agent (which sends one sentence per handled-chunk) and for the TTS
(which speaks one sentence per Piper call). A full stop ends a sentence only when whitespace and a
word that is not lowercase follow, so "$29.95", "e.g. this", "Dr. Smith", "No. 5", "U.S. law" and
the "1." of a list stay whole. A line break always ends one (lists, headings); text inside a ```
fence is never cut. CJK full stops need no space after them.

Streamed text cannot always wait for the next word: a language model may take a second to write it.
`ends_sentence` tells when the text so far clearly ends a sentence already ("done.", "really?"). The
price is a chunk that stops inside "example.com" or "Wait..." right after the first full stop; LLM
tokens rarely do (".com" and "..." are tokens of their own).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise

from .speakable import is_speakable

ABBREVIATIONS = frozenset(
    {
        *("mr", "mrs", "ms", "mx", "dr", "prof", "rev", "hon", "st", "mt", "jr", "sr"),
        *("vs", "etc", "approx", "cf", "viz", "dept", "est"),
        *("gen", "col", "capt", "lt", "sgt", "gov", "sen", "rep"),
    }
)
"""Words that take a full stop without ending a sentence (lowercase, without the stop).

Dotted ones ("e.g.", "i.e.", "U.S.", "a.m.") and single initials ("John F. Kennedy") are recognised by
shape instead. Kept short on purpose: a wrong entry joins two sentences, a missing one splits one.
"""
NUMBER_ABBREVIATIONS = frozenset({"no", "nos", "vol", "fig", "pp"})
"""Abbreviations only before a number: "No. 5" is one sentence, "I said no. Then" two."""

_ENDERS = ".!?…؟۔।॥።։"  # Latin, Arabic and Urdu, Devanagari, Ethiopic, Armenian: a space follows
_CJK_ENDERS = "。！？｡"  # Chinese and Japanese: no space follows
_CLOSERS = "\"')]}»”’」』）》】〕〉"
_OPENERS = "\"'“‘„‚«‹¿¡(["
_FENCE = "```"
_QUOTATIVE = "とっ"  # 「行こう！」と言った: a Japanese quote followed by と continues the sentence

_CANDIDATE = re.compile(
    rf"{_FENCE}|\n|[{re.escape(_ENDERS)}]+[{re.escape(_CLOSERS)}]*|[{_CJK_ENDERS}]+[{re.escape(_CLOSERS)}]*"
)
_TOKEN_BEFORE = re.compile(r"[\w.]+$")
_TOKEN_WINDOW = 40  # longer than any abbreviation or list marker
_FOLLOWING = re.compile(rf"(\s*)[{re.escape(_OPENERS)}]*(.?)", re.DOTALL)
_VISIBLE = re.compile(r"\S")
_DOTTED = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")
_LIST_MARKER = re.compile(r"\d{1,3}|[^\W\d_]")
# The text so far clearly ends a sentence: a word of two or more letters and a full stop (not
# "29." or "e.g."), or ! or ?, then perhaps closing quotes and spaces.
_CLEAR_END = re.compile(rf"(?:(?<![.\w])(?P<word>[^\W\d_]{{2,}})\.|[!?؟।॥።])[{re.escape(_CLOSERS)}]*\s*$")

_CLAUSE_MARK = re.compile(r"[,;:](?=\s)|\s[-–—](?=\s)")
_TRAILING_MARK = re.compile(r"[^\d\s][,;:]\s*$")
_CONJUNCTION = re.compile(
    r"\s(?=(?:and|but|or|so|because|which|while|although|though|when|where|if|then|with)\s)", re.IGNORECASE
)
_PREPOSITION = re.compile(
    r"\s(?=(?:in|on|at|for|from|about|after|before|until|since|during)\s)", re.IGNORECASE
)
_WORD = re.compile(r"\w")

FIRST_CLAUSE_MIN_SENTENCE = 30
"""A complete sentence at least this long may be split at its first clause."""
FIRST_CLAUSE_MIN_HEAD = 4
FIRST_CLAUSE_MIN_TAIL = 15
"""The first clause of a complete sentence has at least MIN_HEAD characters and leaves MIN_TAIL."""
FIRST_CLAUSE_MAX = 200
"""A clause that would end further in is not sent ahead: by then it would not start the audio early."""
_PHRASE_MIN_WORDS = 3
_PHRASE_MIN_TAIL_WORDS = 3
LATER_CLAUSE_MIN = 20
"""Later clauses of a streamed first sentence go ahead only if this long: fewer, fuller Piper calls."""
STREAMED_PHRASE_MIN_WORDS = 4
"""A sentence being written with no clause mark yet may go ahead before a conjunction or preposition
once this many words precede it ("The sky is blue | because ..."); fewer would cut a noun phrase."""


def ends_sentence(text: str) -> bool:
    """True when streamed text clearly ends a sentence, so it need not wait for the next word."""
    match = _CLEAR_END.search(text, max(0, len(text.rstrip()) - _TOKEN_WINDOW))
    if match is None:
        return False
    word = (match["word"] or "").lower()
    return word not in ABBREVIATIONS and word not in NUMBER_ABBREVIATIONS


def _scan(
    text: str, pos: int = 0, in_fence: bool = False, *, first: bool = False
) -> tuple[list[int], bool, int]:
    """Certain sentence ends in `text` from `pos` on, whether a ``` fence is open, where to scan next.

    A possible end that the next characters decide ("29." or "Hi. ") stops the scan; so does the
    first end found if `first`. Text before the returned position needs no second look, which keeps a
    long streamed reply from being rescanned with every chunk.
    """
    ends: list[int] = []
    resume = len(text)
    scanned = pos
    for match in _CANDIDATE.finditer(text, pos):
        scanned = match.end()
        if match.group() == _FENCE:
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        verdict = True if match.group() == "\n" else _ends_here(text, match, ends[-1] if ends else 0)
        if verdict is None:
            resume = match.start()
            break
        if verdict:
            ends.append(match.end())
            if first:
                resume = match.end()
                break
    else:
        resume = max(scanned, len(text) - len(_FENCE) + 1)  # a fence may be half-written
    return ends, in_fence, resume


def _ends_here(text: str, match: re.Match[str], start: int) -> bool | None:
    """Whether this run of sentence punctuation ends the sentence begun at `start`; None: not known yet."""
    end = match.end()
    if end == len(text):
        return None  # a closing quote, a digit or a space may follow
    if match.group()[0] in _CJK_ENDERS:
        return not (match.group()[-1] in _CLOSERS and text[end] in _QUOTATIVE)
    if not text[end].isspace():
        return False  # "29.95", "e.g.", "example.com"
    after = _FOLLOWING.match(text, end)
    gap, following = after.groups() if after else ("", "")
    if "\n" in gap:
        return False  # the line break ends it
    if not following:
        return None
    if match.group().rstrip(_CLOSERS) == ".":
        window = max(start, match.start() - _TOKEN_WINDOW)
        token = _TOKEN_BEFORE.search(text[window : match.start()])
        if token is not None and (
            _is_abbreviation(token.group(), following)
            or (
                _LIST_MARKER.fullmatch(token.group())
                and _VISIBLE.search(text, start, window + token.start()) is None
            )
        ):
            return False
    return not following.islower()


def _is_abbreviation(token: str, next_char: str) -> bool:
    word = token.lower()
    if word in NUMBER_ABBREVIATIONS:
        return next_char.isdigit()
    return (
        word in ABBREVIATIONS
        or _DOTTED.fullmatch(token) is not None
        or (len(token) == 1 and token.isupper())  # an initial
    )


def split_sentences(text: str) -> list[str]:
    """The sentences of a complete text, stripped; empty ones are left out."""
    buffer = SentenceBuffer()
    pieces = [*buffer.add(text), buffer.finish()]
    return [piece.strip() for piece in pieces if piece.strip()]


@dataclass
class SentenceBuffer:
    """Streamed text in, each sentence out as soon as it is certainly complete.

    Joined, everything it hands out is exactly the text it was given: pieces keep their spaces and
    line breaks, so a caller can rebuild the text or clean each piece on its own.
    """

    _text: str = ""
    _resume: int = 0
    _in_fence: bool = False

    @property
    def pending(self) -> str:
        """Text given but not yet handed out: the sentence being written."""
        return self._text

    def add(self, chunk: str) -> list[str]:
        """Append a chunk; the sentences now complete, first to last."""
        self.append(chunk)
        return self.sentences()

    def append(self, chunk: str) -> None:
        self._text += chunk

    def sentences(self) -> list[str]:
        """Hand out the complete sentences in the pending text."""
        ends, self._in_fence, self._resume = _scan(self._text, self._resume, self._in_fence)
        if not self._in_fence and ends_sentence(self._text[ends[-1] if ends else 0 :]):
            ends.append(len(self._text))
        if not ends:
            return []
        pieces = [self._text[a:b] for a, b in pairwise([0, *ends])]
        self._text = self._text[ends[-1] :]
        self._resume = max(0, self._resume - ends[-1])
        return pieces

    def take(self, end: int) -> str:
        """Hand out the first `end` characters of the pending text (a first clause, sent early)."""
        head, self._text = self._text[:end], self._text[end:]
        self._resume = max(0, self._resume - end)
        return head

    def finish(self) -> str:
        """Whatever text is left at the end of the stream."""
        rest = self._text
        self._text, self._resume, self._in_fence = "", 0, False
        return rest


def clause_ends(text: str) -> list[int]:
    """Offsets just after each clause mark of a sentence: , ; : or a spaced dash, before a space."""
    return [match.end() for match in _CLAUSE_MARK.finditer(text)]


def first_clause_end(text: str, min_chars: int) -> int | None:
    """Where the first clause of a sentence still being written ends, once that is sure; or None.

    The clause runs to the first clause mark that leaves at least `min_chars` before it, within the
    first sentence of `text` (and before any ``` fence). It is sure once a word follows the mark, or as
    soon as the mark arrives unless a digit precedes it: "1," may be the start of "1,000". Only the
    first FIRST_CLAUSE_MAX characters are searched.
    """
    window = text[:FIRST_CLAUSE_MAX]
    fence = _find(window, _FENCE)
    ends, _, _ = _scan(window[:fence], first=True)
    limit = ends[0] if ends else fence
    complete = bool(ends) or fence < len(window)  # the first sentence (or what precedes a fence) is all here
    marks = [end for end in clause_ends(window[:limit]) if end < limit]
    if len(text) == limit and (trailing := _TRAILING_MARK.search(text)):
        marks.append(trailing.start() + 2)
    for end in marks:
        head = text[:end].strip()
        if len(head) < min_chars or not is_speakable(head):
            continue
        if _WORD.search(text, end, limit if complete else len(text)):
            return end
        if complete:
            return None  # the mark ends the sentence: there is no clause to send ahead
        return end if _TRAILING_MARK.search(text[:end]) is not None else None
    return None


def first_phrase_end(
    text: str, min_words: int = STREAMED_PHRASE_MIN_WORDS, word_done: bool = False
) -> int | None:
    """Where a phrase of the first sentence still being written ends, before a conjunction or a
    preposition once that word is whole ("The sky is blue| because "); or None.

    For a sentence with no clause mark early on: a voice says the phrase while the model writes the
    rest, and joins the two without a pause (there is no comma in the text). Only text before the first
    sentence end and any ``` fence is searched. `word_done`: the text ends at the end of a word (a
    streamed chunk ended there), so a conjunction it ends with is whole ("The sky is blue because").
    """
    window = text[:FIRST_CLAUSE_MAX]
    if word_done and len(text) <= FIRST_CLAUSE_MAX and text[-1:].isalpha():
        window += " "
    fence = _find(window, _FENCE)
    ends, _, _ = _scan(window[:fence], first=True)
    if ends:
        return None  # the sentence is complete: it goes whole, or split by `first_clause`
    for pattern in (_CONJUNCTION, _PREPOSITION):
        for match in pattern.finditer(window, 0, fence):
            head = text[: match.start()]
            if len(head.split()) >= min_words and is_speakable(head) and not head[-1].isdigit():
                return match.start()
    return None


def first_clause(sentence: str) -> tuple[str, str] | None:
    """Split a long complete sentence after its first clause, or None.

    A clause ending at punctuation, or else a phrase ending before a conjunction or a preposition, is
    a natural phrase break. The phrase gets no comma the text does not have: a voice joins it to the
    rest with no pause ("It is half past four | in the afternoon.").
    """
    if len(sentence) < FIRST_CLAUSE_MIN_SENTENCE:
        return None
    for end in clause_ends(sentence):
        head, tail = sentence[:end].strip(), sentence[end:].strip()
        if len(tail) < FIRST_CLAUSE_MIN_TAIL:
            break
        if len(head) >= FIRST_CLAUSE_MIN_HEAD:
            return head, tail
    for pattern in (_CONJUNCTION, _PREPOSITION):
        for match in pattern.finditer(sentence):
            head, tail = sentence[: match.start()].strip(), sentence[match.end() :].strip()
            if len(head.split()) >= _PHRASE_MIN_WORDS and len(tail.split()) >= _PHRASE_MIN_TAIL_WORDS:
                return head, tail
    return None


def _find(text: str, sub: str) -> int:
    index = text.find(sub)
    return len(text) if index < 0 else index


@dataclass(frozen=True)
class EarlyPiece:
    """A clause or phrase of a first sentence still being written, taken off the buffer to speak now."""

    text: str
    is_phrase: bool
    """Cut before a conjunction or preposition, with no punctuation of its own (none is added)."""


def take_early_piece(buffer: SentenceBuffer, first: bool, word_done: bool = False) -> EarlyPiece | None:
    """The next sure clause of the unfinished sentence pending in `buffer`, taken off it; or None.

    For the first sentence of a reply, while the model is still writing it: its first piece may be a
    short clause ("Sure,") or a phrase ("The sky is blue"), later ones are clauses of LATER_CLAUSE_MIN
    characters. Call it only while no complete sentence is pending (`SentenceBuffer.sentences()` gave
    none). `word_done`: the pending text ends at the end of a word (see `first_phrase_end`).
    """
    pending = buffer.pending
    if (end := first_clause_end(pending, FIRST_CLAUSE_MIN_HEAD if first else LATER_CLAUSE_MIN)) is not None:
        return EarlyPiece(buffer.take(end), is_phrase=False)
    if first and (end := first_phrase_end(pending, word_done=word_done)) is not None:
        return EarlyPiece(buffer.take(end), is_phrase=True)
    return None
