"""Turn a stream of LLM text into speakable sentences, capped to end on a sentence boundary.

Pieces are cut where `wyoming_persona.sentences` puts sentence ends and each piece goes through
`make_speakable`, so every streamed chunk can be read aloud as it is; joined, the chunks are the full
reply. The first sentence goes clause by clause (its first piece may end at a phrase, before "because"
or "with"): on two cores a 1.5B model writes about nine tokens a second, so waiting for a whole first
sentence would keep the voice silent for a second or two.

A chunk is the model's own text: markup it cannot speak is taken out, but nothing is added. A phrase
cut before "for about five minutes" gets no comma, a last sentence without a full stop keeps none, and
the space or line break between two chunks is the one the model wrote ("Boil an egg for, about 5
minutes" was shown and spoken when the cut added a comma).
"""

from __future__ import annotations

import re

from ..sentences import SentenceBuffer, take_early_piece
from ..speakable import is_speakable, make_speakable

_LEFTOVER_MARKUP = re.compile(r"\*+|`+|(?<!\w)_{1,2}|_{1,2}(?!\w)|^#+\s*")
_TERMINAL = re.compile(r"[.!?…:;,][\"'”’)\]]*$")
_SPACES = re.compile(r"\s+")
_NEXT_WORD = re.compile(r"\s*\S+")
CHARS_PER_TOKEN = 6
"""Generous characters-per-token bound for the safety cap when a server ignores max_tokens."""


def speakable_piece(text: str, end_mark: str = ".") -> str:
    """One sentence, clause or line made speakable, ending in punctuation so a voice pauses after it
    (`end_mark` when it has none: "," for a phrase of a sentence still going on)."""
    clause_mark = text.rstrip()[-1:] if text.rstrip()[-1:] in (",", ";", ":") else ""
    text = make_speakable(text)
    text = _LEFTOVER_MARKUP.sub("", text)
    text = _SPACES.sub(" ", text).strip()
    if not is_speakable(text):
        return ""
    if clause_mark and not text.endswith(clause_mark):
        text += clause_mark  # a first clause keeps its comma: the voice pauses, it does not stop
    if not _TERMINAL.search(text):
        text += end_mark
    return text


def spoken_text(raw: str) -> str:
    """A piece of the model's text as it is shown and spoken: markup, emoji and extra spaces taken
    out, nothing added; "" when nothing speakable is left."""
    text = _LEFTOVER_MARKUP.sub("", make_speakable(raw))
    text = _SPACES.sub(" ", text).strip()
    return text if is_speakable(text) else ""


def gap(whitespace: str) -> str:
    """What goes between two chunks: a line break where the model wrote one, else a space, or
    nothing where it wrote none (no space after a Chinese full stop)."""
    if "\n" in whitespace:
        return "\n"
    return " " if whitespace else ""


class ReplyShaper:
    """Feed it deltas; it returns the speakable chunks that are complete so far."""

    def __init__(self, max_tokens: int | None = None) -> None:
        self.max_chars = max_tokens * CHARS_PER_TOKEN if max_tokens else None
        self._buffer = SentenceBuffer()
        self._raw_chars = 0
        self._pieces: list[str] = []
        self._trailing = ""
        """The whitespace that ended the last raw piece: part of the gap before the next chunk."""
        self._first_sentence_open = True
        self.capped = False
        """True once the safety cap was hit: stop generating, the rest is dropped."""

    @property
    def text(self) -> str:
        return "".join(self._pieces)

    def feed(self, text: str) -> list[str]:
        if self.capped:
            return []
        self._raw_chars += len(text)
        if self.max_chars is not None and self._raw_chars > self.max_chars:
            self.capped = True
            keep = len(text) - (self._raw_chars - self.max_chars)
            text = text[: max(keep, 0)]
        self._buffer.append(text)
        if sentences := self._buffer.sentences():
            self._first_sentence_open = False
            return self._emit(sentences)
        return self._first_sentence_pieces()

    def _first_sentence_pieces(self) -> list[str]:
        """Clauses of the unfinished first sentence that are complete already (the first may be a
        phrase)."""
        chunks: list[str] = []
        while self._first_sentence_open and (piece := take_early_piece(self._buffer, not self._pieces)):
            text = piece.text
            if piece.is_phrase:  # with the word that ends it, so the TTS knows the phrase is over
                word = _NEXT_WORD.match(self._buffer.pending)
                text += self._buffer.take(word.end()) if word else ""
            chunks += self._emit([text])
        return chunks

    def finish(self, truncated: bool = False) -> list[str]:
        """Flush the rest; a reply cut by the token cap drops its unfinished last sentence."""
        rest = self._buffer.finish()
        if (truncated or self.capped) and self._pieces:
            return []
        return self._emit([rest])

    def _emit(self, raw_pieces: list[str]) -> list[str]:
        chunks = []
        for raw in raw_pieces:
            stripped = raw.lstrip()
            between = gap(self._trailing + raw[: len(raw) - len(stripped)])
            self._trailing = stripped[len(stripped.rstrip()) :]
            piece = spoken_text(raw)
            if not piece:
                continue
            chunk = f"{between}{piece}" if self._pieces else piece
            self._pieces.append(chunk)
            chunks.append(chunk)
        return chunks
