"""Sampling that keeps an embedded model's reply to plain spoken sentences.

A reply is spoken, so markdown, list layout, emoji and line breaks are never wanted. Rather than strip
them after the model wrote them (the reply would then not be what the model wrote), the tokens that
would write them are never sampled: every vocabulary entry holding such a character, or the start of
one, gets a logit of minus infinity, and so does an entry finishing an emoji that the token before
began. The set is found once per model (one pass over the vocabulary) and applied with one numpy
assignment per token. A GBNF grammar could say
the same, but llama.cpp checks a grammar against the whole vocabulary at every token; the cost of
both is in bench/README.md (Answers worth hearing). Replies with tools offered are left alone: a call
needs its braces and tags.
"""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BANNED_CHARS = frozenset("*#`_|~<>[]{}\\\n\r\t•")
"""Markdown and list layout, tags and line breaks: nothing a voice says."""
_FOUR_BYTE_LEADS = frozenset(range(0xF0, 0xF5))
"""UTF-8 starts of characters from U+10000 on: emoji and pictographs (and scripts no voice reads)."""
_SYMBOL_SECONDS = frozenset([0x83, *range(0x86, 0xB0), 0xB8, 0xB9])
"""After the byte E2: U+20C0-U+20FF (combining symbols), U+2180-U+2BFF (arrows, math, boxes,
pictographs, dingbats, stars) and U+2E00-U+2E7F. The rest of E2 80-85 stays: dashes, quotes, the
ellipsis, currency, letterlike symbols."""


def _symbol(char: str) -> bool:
    code = ord(char)
    return (
        0x20C0 <= code < 0x2100
        or 0x2180 <= code < 0x2C00
        or 0x2E00 <= code < 0x2E80
        or unicodedata.category(char) == "So"
    )


Processor = Callable[[Any, np.ndarray], np.ndarray]


def unspeakable(piece: bytes) -> bool:
    """A vocabulary entry (its bytes) would write markup, a line break or an emoji, whole or in part."""
    if not piece:
        return False  # special tokens (end of turn) detokenize to nothing: always allowed
    if any(byte in _FOUR_BYTE_LEADS for byte in piece):
        return True
    if any(a == 0xE2 and b in _SYMBOL_SECONDS for a, b in itertools.pairwise(piece)):
        return True
    text = piece.decode("utf-8", errors="ignore")
    return any(char in BANNED_CHARS or _symbol(char) for char in text)


@dataclass(frozen=True)
class Unspeakable:
    """A model's tokens that a spoken reply never samples."""

    always: np.ndarray
    """Ids of tokens that `unspeakable` refuses."""
    after_lead: np.ndarray
    """Bool per id: the token ends with the byte E2, the start of a character it does not finish."""
    symbol_ends: np.ndarray
    """Ids of tokens that start by finishing such a character as a symbol (E2 98 83 is a snowman)."""


def unspeakable_tokens(llama: Any) -> Unspeakable:
    """Every token of the model, sorted out once (blocking: about a second per 50,000 tokens)."""
    count = llama.n_vocab()
    always, symbol_ends = [], []
    after_lead = np.zeros(count, dtype=bool)
    for token in range(count):
        piece = llama.detokenize([token])
        if unspeakable(piece):
            always.append(token)
            continue
        if piece.endswith(b"\xe2"):
            after_lead[token] = True
        if piece[:1] and piece[0] in _SYMBOL_SECONDS:
            symbol_ends.append(token)
    return Unspeakable(np.array(always, dtype=np.intc), after_lead, np.array(symbol_ends, dtype=np.intc))


def plain_speech_processor(tokens: Unspeakable, not_first: Sequence[int] = ()) -> Processor:
    """A llama-cpp-python logits processor for one reply that never samples an unspeakable token, nor
    one of `not_first` as the reply's first token."""
    first = np.asarray(not_first, dtype=np.intc)
    start: int | None = None

    def processor(input_ids: Any, scores: np.ndarray) -> np.ndarray:
        nonlocal start
        start = len(input_ids) if start is None else start
        scores[tokens.always] = -np.inf
        if len(input_ids) and tokens.after_lead[input_ids[-1]]:
            scores[tokens.symbol_ends] = -np.inf
        if len(input_ids) == start and len(first):
            scores[first] = -np.inf
        return scores

    return processor
