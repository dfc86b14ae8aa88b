"""Text to speakable pieces: sentence splitting (streamed or whole), long-sentence and first-clause cuts.

A piece is what Piper synthesizes in one call. Sentences come from `sentence_stream`; a sentence longer
than `max_piece_chars` is cut at clause punctuation, then at spaces, so no single Piper call grows
without bound. The first sentence of a response may be cut once more, at its first clause, so audio
starts sooner (see `first_clause`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from sentence_stream import SentenceBoundaryDetector

from ..speakable import is_speakable, make_speakable, strip_emoji

DEFAULT_MAX_PIECE_CHARS = 300
# A first sentence at least this long is split at its first clause boundary.
FIRST_CLAUSE_MIN_SENTENCE = 30
# The clause must have at least this many characters and leave this many for the rest.
FIRST_CLAUSE_MIN_HEAD = 4
FIRST_CLAUSE_MIN_TAIL = 15

_CLAUSE_PUNCT = re.compile(r"[,;:](?=\s)|\s[-–—](?=\s)")
_CONJUNCTION = re.compile(
    r"\s(?=(?:and|but|or|so|because|which|while|although|though|when|where|if|then|with)\s)", re.IGNORECASE
)
_PREPOSITION = re.compile(
    r"\s(?=(?:in|on|at|for|from|about|after|before|until|since|during)\s)", re.IGNORECASE
)
# A streamed chunk that ends like this closes its sentence at once: a word of two or more letters
# before the full stop (not "29." or "e.g.") that is not a common abbreviation, or ! or ?.
_SENTENCE_END = re.compile(r"(?:(?<![.\w])(?P<word>[^\W\d_]{2,})\.|[!?])[\"'”’)\]]*\s*$")
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "vs", "etc", "jr", "sr", "prof", "approx", "no"})
_STREAMED_CLAUSE = re.compile(r"[^\d\s][,;:]\s*$")
STREAMED_CLAUSE_MIN = 20
_PHRASE_MIN_WORDS = 3
_PHRASE_MIN_TAIL_WORDS = 3


@dataclass(frozen=True)
class Sentence:
    """One sentence of a response, as the pieces Piper will synthesize one call at a time."""

    pieces: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.pieces)


def first_clause(sentence: str) -> tuple[str, str] | None:
    """Split a long sentence after its first clause, or None.

    Piper's time to audio grows with the length of the sentence. A clause ending at punctuation, or
    else a phrase ending before a conjunction or a preposition (given a comma, so espeak uses its
    continuing intonation and a short pause), is a natural phrase break: speaking it first sounds
    like a speaker pausing at a comma, not like a cut.
    """
    if len(sentence) < FIRST_CLAUSE_MIN_SENTENCE:
        return None
    for match in _CLAUSE_PUNCT.finditer(sentence):
        head, tail = sentence[: match.end()].strip(), sentence[match.end() :].strip()
        if len(head) >= FIRST_CLAUSE_MIN_HEAD and len(tail) >= FIRST_CLAUSE_MIN_TAIL:
            return head, tail
        if len(tail) < FIRST_CLAUSE_MIN_TAIL:
            break
    for pattern in (_CONJUNCTION, _PREPOSITION):
        for match in pattern.finditer(sentence):
            head, tail = sentence[: match.start()].strip(), sentence[match.end() :].strip()
            if len(head.split()) >= _PHRASE_MIN_WORDS and len(tail.split()) >= _PHRASE_MIN_TAIL_WORDS:
                return head.rstrip(",") + ",", tail
    return None


def ends_sentence(chunk: str) -> bool:
    """True when a streamed chunk clearly ends a sentence, so it need not wait for the next one.

    A boundary detector alone waits for the capital letter of the next sentence, which an LLM may
    take a second to write; the sentence is complete already.
    """
    match = _SENTENCE_END.search(chunk)
    return match is not None and (match["word"] or "").lower() not in _ABBREVIATIONS


def _early_clause(pending: str) -> tuple[str, str] | None:
    """The first clause of an incomplete streamed sentence, once text after the clause has begun.

    A long enough clause that ends the text so far (a sender that streams clause by clause) goes at
    once; after a digit it waits, since "1," may be the start of "1,000".
    """
    if _STREAMED_CLAUSE.search(pending) and len(pending.strip()) >= STREAMED_CLAUSE_MIN:
        clause = make_speakable(pending)
        if is_speakable(clause):
            mark = pending.strip()[-1]
            return (clause if clause.endswith(mark) else clause + mark), ""
    for match in _CLAUSE_PUNCT.finditer(pending):
        head, tail = pending[: match.end()], pending[match.end() :]
        clause = make_speakable(head)
        if len(head.strip()) >= FIRST_CLAUSE_MIN_HEAD and is_speakable(clause):
            if not re.search(r"\w", tail):
                return None  # wait: the text after the comma decides nothing yet
            mark = head.strip()[-1]
            return (clause if clause.endswith(mark) else clause + mark), tail
    return None


def cut_long(sentence: str, max_chars: int = DEFAULT_MAX_PIECE_CHARS) -> list[str]:
    """Cut a sentence longer than `max_chars` at clause punctuation, else at the last space."""
    pieces = []
    rest = sentence.strip()
    while len(rest) > max_chars:
        window = rest[: max_chars + 1]
        cuts = [m.end() for m in _CLAUSE_PUNCT.finditer(window) if m.end() >= max_chars // 3]
        cut = cuts[-1] if cuts else window.rfind(" ")
        if cut <= 0:
            cut = max_chars
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        pieces.append(rest)
    return pieces


@dataclass
class SentenceSplitter:
    """Turns text (whole, or streamed in chunks) into speakable sentences, in order."""

    max_piece_chars: int = DEFAULT_MAX_PIECE_CHARS
    split_first_clause: bool = True
    _detector: SentenceBoundaryDetector = field(default_factory=SentenceBoundaryDetector)
    _emitted: int = 0
    _head: str | None = ""
    """Streamed text of the first sentence, held until its first clause is known; None once decided."""

    def add(self, chunk: str, *, early: bool = True) -> Iterator[Sentence]:
        """Sentences completed by this chunk.

        Streaming (`early`), the first clause of the first sentence goes out as soon as the text
        after its comma starts, before the sentence is complete. Emoji and asterisks go before
        boundary detection: "high. **Bold**" or "done. 😀 Next" would otherwise hide the sentence
        break from the detector (it wants a capital after the space).
        """
        chunk = strip_emoji(chunk).replace("*", "")
        if self._head is not None and early and self.split_first_clause and self._emitted == 0:
            self._head += chunk
            split = _early_clause(self._head)
            complete = ends_sentence(self._head) or any(SentenceBoundaryDetector().add_chunk(self._head))
            if split is None and not complete:
                return  # neither a clause nor a sentence yet: keep waiting
            chunk, self._head = self._head, None
            if split is not None:
                clause, chunk = split
                self._emitted += 1
                yield Sentence((clause,))
        for raw in self._detector.add_chunk(chunk):
            yield from self._sentence(raw)
        if early and ends_sentence(chunk):
            yield from self._sentence(self._detector.finish())

    def finish(self) -> Iterator[Sentence]:
        """Whatever text is left at the end of the stream."""
        if self._head:
            yield from self.add(self._head, early=False)
        self._head = None
        yield from self._sentence(self._detector.finish())

    def split(self, text: str) -> Iterator[Sentence]:
        """All sentences of a complete text (made speakable as a whole first)."""
        self._head = None
        yield from self.add(make_speakable(text), early=False)
        yield from self.finish()

    def _sentence(self, raw: str) -> Iterator[Sentence]:
        text = make_speakable(raw)
        if not is_speakable(text):
            return
        pieces = cut_long(text, self.max_piece_chars)
        if self._emitted == 0 and self.split_first_clause:
            clause = first_clause(pieces[0])
            if clause is not None:
                pieces[:1] = clause
        self._emitted += 1
        yield Sentence(tuple(pieces))
