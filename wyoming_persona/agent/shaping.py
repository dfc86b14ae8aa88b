"""Turn a stream of LLM text into speakable sentences, capped to end on a sentence boundary.

Pieces are cut where `wyoming_persona.sentences` puts sentence ends and each piece goes through
`make_speakable`, so every streamed chunk can be read aloud as it is; joined, the chunks are the full
reply. The first sentence goes clause by clause (its first piece may end at a phrase, before "because"
or "with"): on two cores a 1.5B model writes about nine tokens a second, so waiting for a whole first
sentence would keep the voice silent for a second or two.
"""

from __future__ import annotations

import re

from ..sentences import SentenceBuffer, take_early_piece
from ..speakable import is_speakable, make_speakable

_LEFTOVER_MARKUP = re.compile(r"\*+|`+|(?<!\w)_{1,2}|_{1,2}(?!\w)|^#+\s*")
_TERMINAL = re.compile(r"[.!?…:;,][\"'”’)\]]*$")
_SPACES = re.compile(r"\s+")
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


class ReplyShaper:
    """Feed it deltas; it returns the speakable chunks that are complete so far."""

    def __init__(self, max_tokens: int | None = None) -> None:
        self.max_chars = max_tokens * CHARS_PER_TOKEN if max_tokens else None
        self._buffer = SentenceBuffer()
        self._raw_chars = 0
        self._pieces: list[str] = []
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
            chunks += self._emit([piece.text], "," if piece.is_phrase else ".")
        return chunks

    def finish(self, truncated: bool = False) -> list[str]:
        """Flush the rest; a reply cut by the token cap drops its unfinished last sentence."""
        rest = self._buffer.finish()
        if (truncated or self.capped) and self._pieces:
            return []
        return self._emit([rest])

    def _emit(self, raw_pieces: list[str], end_mark: str = ".") -> list[str]:
        chunks = []
        for raw in raw_pieces:
            piece = speakable_piece(raw, end_mark)
            if not piece:
                continue
            chunk = f" {piece}" if self._pieces else piece
            self._pieces.append(chunk)
            chunks.append(chunk)
        return chunks
