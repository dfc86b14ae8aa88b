"""Turn a stream of LLM text into speakable sentences, capped to end on a sentence boundary.

Pieces are cut at sentence ends and line breaks and each piece goes through `make_speakable`, so
every streamed chunk can be read aloud as it is; joined, the chunks are exactly the full reply.
"""

from __future__ import annotations

import re

from ..speakable import is_speakable, make_speakable

_BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)|\n")
_ABBREVIATION = re.compile(
    r"(?:^|\s)(?:mr|mrs|ms|dr|st|vs|etc|e\.g|i\.e|no|approx|prof|jr|sr)\.$", re.IGNORECASE
)
_LIST_MARKER = re.compile(r"(?:^|\n)\s*(?:\d{1,3}|[a-zA-Z])[.)]$")
_LEFTOVER_MARKUP = re.compile(r"\*+|`+|(?<!\w)_{1,2}|_{1,2}(?!\w)|^#+\s*")
_TERMINAL = re.compile(r"[.!?…:;,][\"'”’)\]]*$")
_SPACES = re.compile(r"\s+")
# Up to the first , ; or : that follows a non-digit and is followed by more text.
_FIRST_CLAUSE = re.compile(r"[^\n]*?[^\d\s][,;:](?=\s+\S)")
FIRST_CLAUSE_MIN_CHARS = 20

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


def _first_clause(buffer: str) -> str | None:
    """The reply's first clause, once the text after it has begun, if the first sentence is long.

    Sent on its own, it lets TTS start speaking while the LLM is still writing the sentence.
    """
    clause = _FIRST_CLAUSE.match(buffer)
    if clause is None or len(clause.group().strip()) < FIRST_CLAUSE_MIN_CHARS:
        return None
    sentence_end = _BOUNDARY.search(buffer)
    if sentence_end is not None and sentence_end.start() < clause.end():
        return None
    return clause.group()


class ReplyShaper:
    """Feed it deltas; it returns the speakable chunks that are complete so far."""

    def __init__(self, max_tokens: int | None = None) -> None:
        self.max_chars = max_tokens * CHARS_PER_TOKEN if max_tokens else None
        self._buffer = ""
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
        self._buffer += text
        return self._emit(self._split())

    def finish(self, truncated: bool = False) -> list[str]:
        """Flush the rest; a reply cut by the token cap drops its unfinished last sentence."""
        rest, self._buffer = self._buffer, ""
        if (truncated or self.capped) and self._pieces:
            return []
        return self._emit([rest])

    def _split(self) -> list[str]:
        if self._buffer.count("```") % 2:  # inside a code block: wait for it to close
            return []
        pieces = []
        start = 0
        if not self._pieces and (clause := _first_clause(self._buffer)):
            pieces.append(clause)
            start = len(clause)
        for match in _BOUNDARY.finditer(self._buffer):
            end = match.end()
            candidate = self._buffer[start:end]
            if match.group() != "\n" and (_ABBREVIATION.search(candidate) or _LIST_MARKER.search(candidate)):
                continue
            pieces.append(candidate)
            start = end
        self._buffer = self._buffer[start:]
        return pieces

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
