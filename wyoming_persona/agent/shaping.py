"""Turn a stream of LLM text into speakable sentences, capped to end on a sentence boundary.

Pieces are cut where `wyoming_persona.sentences` puts sentence ends (and the first clause of a long
first sentence) and each piece goes through `make_speakable`, so every streamed chunk can be read aloud
as it is; joined, the chunks are exactly the full reply.
"""

from __future__ import annotations

import re

from ..sentences import SentenceBuffer, first_clause_end
from ..speakable import is_speakable, make_speakable

_LEFTOVER_MARKUP = re.compile(r"\*+|`+|(?<!\w)_{1,2}|_{1,2}(?!\w)|^#+\s*")
_TERMINAL = re.compile(r"[.!?…:;,][\"'”’)\]]*$")
_SPACES = re.compile(r"\s+")
FIRST_CLAUSE_MIN_CHARS = 20
"""A first clause shorter than this is not worth a chunk of its own."""

CHARS_PER_TOKEN = 6
"""Generous characters-per-token bound for the safety cap when a server ignores max_tokens."""


def speakable_piece(text: str) -> str:
    """One sentence or line made speakable, ending in punctuation so a voice pauses after it."""
    clause_mark = text.rstrip()[-1:] if text.rstrip()[-1:] in (",", ";", ":") else ""
    text = make_speakable(text)
    text = _LEFTOVER_MARKUP.sub("", text)
    text = _SPACES.sub(" ", text).strip()
    if not is_speakable(text):
        return ""
    if clause_mark and not text.endswith(clause_mark):
        text += clause_mark  # a first clause keeps its comma: the voice pauses, it does not stop
    if not _TERMINAL.search(text):
        text += "."
    return text


class ReplyShaper:
    """Feed it deltas; it returns the speakable chunks that are complete so far."""

    def __init__(self, max_tokens: int | None = None) -> None:
        self.max_chars = max_tokens * CHARS_PER_TOKEN if max_tokens else None
        self._buffer = SentenceBuffer()
        self._raw_chars = 0
        self._pieces: list[str] = []
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
        pieces = []
        if not self._pieces and (end := first_clause_end(self._buffer.pending, FIRST_CLAUSE_MIN_CHARS)):
            pieces.append(self._buffer.take(end))  # TTS can start while the sentence is being written
        return self._emit(pieces + self._buffer.sentences())

    def finish(self, truncated: bool = False) -> list[str]:
        """Flush the rest; a reply cut by the token cap drops its unfinished last sentence."""
        rest = self._buffer.finish()
        if (truncated or self.capped) and self._pieces:
            return []
        return self._emit([rest])

    def _emit(self, raw_pieces: list[str]) -> list[str]:
        chunks = []
        for raw in raw_pieces:
            piece = speakable_piece(raw)
            if not piece:
                continue
            chunk = f" {piece}" if self._pieces else piece
            self._pieces.append(chunk)
            chunks.append(chunk)
        return chunks
