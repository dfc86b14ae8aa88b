"""Text to the pieces Piper speaks: sentences, each maybe cut for length, the first maybe at a clause.

A piece is what Piper synthesizes in one call. Sentence and clause boundaries come from
`wyoming_persona.sentences`; a sentence longer than `max_piece_chars` is cut at clause punctuation,
then at spaces, so no single Piper call grows without bound. The first sentence of a response may be
cut once more, at its first clause, so audio starts sooner.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ..sentences import (
    FIRST_CLAUSE_MIN_HEAD,
    SentenceBuffer,
    clause_ends,
    first_clause,
    first_clause_end,
    split_sentences,
)
from ..speakable import is_speakable, make_speakable, strip_emoji

DEFAULT_MAX_PIECE_CHARS = 300


@dataclass(frozen=True)
class Sentence:
    """One sentence of a response, as the pieces Piper will synthesize one call at a time."""

    pieces: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.pieces)


def _early_clause(buffer: SentenceBuffer) -> str | None:
    """Take the first clause of the streamed first sentence off the buffer once it is known, speakable.

    Even a short clause goes once the next word has begun: Piper speaks "Sure," while the rest of the
    sentence is still being written.
    """
    end = first_clause_end(buffer.pending, FIRST_CLAUSE_MIN_HEAD)
    if end is None:
        return None
    head = buffer.pending[:end]
    clause = make_speakable(head)
    if not is_speakable(clause):
        return None
    buffer.take(end)
    mark = head.strip()[-1]
    return clause if clause.endswith(mark) else clause + mark


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

    def add(self, chunk: str) -> Iterator[Sentence]:
        """Sentences completed by this chunk.

        The first clause of the first sentence goes out on its own as soon as it is known, before the
        sentence is complete. Emoji and asterisks go before boundary detection: "high. **Bold**" or
        "done. 😀 Next" would otherwise hide the sentence break (it wants a capital after the space).
        """
        self._buffer.append(strip_emoji(chunk).replace("*", ""))
        if self.split_first_clause and self._emitted == 0 and (clause := _early_clause(self._buffer)):
            self._emitted += 1
            yield Sentence((clause,))
        for raw in self._buffer.sentences():
            yield from self._sentence(raw)

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
        self._emitted += 1
        yield Sentence(tuple(pieces))
