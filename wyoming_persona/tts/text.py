"""Text to the pieces Piper speaks: sentences, each maybe cut for length, the first maybe at a clause.

A piece is what Piper synthesizes in one call. Sentence and clause boundaries come from
`wyoming_persona.sentences`; a sentence longer than `max_piece_chars` is cut at clause punctuation,
then at spaces, so no single Piper call grows without bound. The first sentence of a response may be
cut once more, at its first clause, so audio starts sooner.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..sentences import SentenceBuffer, clause_ends, first_clause, split_sentences, take_early_piece
from ..speakable import is_speakable, make_speakable, strip_emoji

DEFAULT_MAX_PIECE_CHARS = 300


_PAUSE_MARK = re.compile(r"(?:[,;:]|\s[-–—])[\"'”’)\]]*$")


def pauses_after(piece: str) -> bool:
    """The text has a pause where this piece ends: a comma, semicolon, colon or spaced dash. A piece
    cut before "because" or "for" has none, and its join gets none."""
    return _PAUSE_MARK.search(piece) is not None


@dataclass(frozen=True)
class Sentence:
    """One sentence of a response, as the pieces Piper will synthesize one call at a time."""

    pieces: tuple[str, ...]
    continued: bool = False
    """It goes on a sentence whose first clauses were spoken already (joined with the pause its text
    has there: `pauses_after`)."""
    continues: bool = False
    """An early clause: the rest of its sentence follows."""

    @property
    def text(self) -> str:
        return " ".join(self.pieces)


def _early_piece(buffer: SentenceBuffer, first: bool) -> str | None:
    """Take the next sure clause (or first phrase) of the streamed first sentence off the buffer.

    Even a short clause goes as soon as its mark arrives: Piper speaks "Sure," while the rest of the
    sentence is still being written. A phrase cut before "because" or "with" is spoken as it is written,
    without a comma, and joined to the rest without a pause. Called as a chunk ends: a word the text ends
    with is whole (the agent sends a phrase with the word that ends it: "The sky is blue because").
    """
    while (piece := take_early_piece(buffer, first, word_done=True)) is not None:
        text = make_speakable(piece.text)
        if is_speakable(text):
            return text
    return None


def cut_long(sentence: str, max_chars: int = DEFAULT_MAX_PIECE_CHARS) -> list[str]:
    """Cut a sentence longer than `max_chars` at clause punctuation, else at the last space."""
    pieces = []
    rest = sentence.strip()
    while len(rest) > max_chars:
        window = rest[: max_chars + 1]
        cuts = [end for end in clause_ends(window) if end >= max_chars // 3]
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
    _buffer: SentenceBuffer = field(default_factory=SentenceBuffer)
    _emitted: int = 0
    _first_sentence_open: bool = True

    def add(self, chunk: str) -> Iterator[Sentence]:
        """Sentences completed by this chunk.

        While the first sentence is being written, its clauses go out one by one as soon as each is
        known (the first may be a phrase). Emoji and asterisks go before boundary detection: "high.
        **Bold**" or "done. 😀 Next" would otherwise hide the sentence break (it wants a capital after
        the space).
        """
        self._buffer.append(strip_emoji(chunk).replace("*", ""))
        if sentences := self._buffer.sentences():
            for raw in sentences:
                yield from self._sentence(raw)
            self._first_sentence_open = False
            return
        while self.split_first_clause and self._first_sentence_open:
            clause = _early_piece(self._buffer, first=self._emitted == 0)
            if clause is None:
                break
            yield Sentence((clause,), continued=self._emitted > 0, continues=True)
            self._emitted += 1

    def finish(self) -> Iterator[Sentence]:
        """Whatever text is left at the end of the stream."""
        yield from self._sentence(self._buffer.finish())

    def split(self, text: str) -> Iterator[Sentence]:
        """All sentences of a complete text (made speakable as a whole first)."""
        for raw in split_sentences(make_speakable(text)):
            yield from self._sentence(raw)

    def _sentence(self, raw: str) -> Iterator[Sentence]:
        text = make_speakable(raw)
        if not is_speakable(text):
            return
        pieces = cut_long(text, self.max_piece_chars)
        if self._emitted == 0 and self.split_first_clause:
            clause = first_clause(pieces[0])
            if clause is not None:
                pieces[:1] = clause
        continued = self._emitted > 0 and self._first_sentence_open
        self._first_sentence_open = False
        self._emitted += 1
        yield Sentence(tuple(pieces), continued=continued)
