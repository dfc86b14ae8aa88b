"""Turn LLM-style text into something a TTS voice can read aloud.

Markdown, emoji and URLs are the usual offenders: read literally they become "asterisk asterisk",
"smiling face with heart eyes" or a URL spelled letter by letter.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from urllib.parse import urlparse

_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.DOTALL)
_INLINE_CODE = re.compile(r"`([^`]*)`")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\"']+", re.IGNORECASE)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s*", re.MULTILINE)
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+", re.MULTILINE)
_QUOTE = re.compile(r"^\s*>+\s?", re.MULTILINE)
_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$", re.MULTILINE)
_EMPHASIS = re.compile(r"(\*\*|\*|~~|(?<!\w)__|(?<!\w)_)(?=\S)(.+?)(?<=\S)\1(?!\w)")
_TABLE_DIVIDER = re.compile(r"^\s*\|?\s*:?-{2,}.*$", re.MULTILINE)
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_SPACES = re.compile(r"[ \t]+")


def make_speakable(text: str) -> str:
    """Strip markdown, emoji and URLs; list items and other lines stay one per line.

    It only takes away: nothing the model did not write is added (no full stop after a line, no
    comma for a table's bar), so the text a user reads and hears is the model's own."""
    text = _CODE_BLOCK.sub(" ", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _URL.sub(_url_to_words, text)
    text = _HTML_TAG.sub(" ", text)
    text = _RULE.sub("", text)
    text = _TABLE_DIVIDER.sub("", text)
    text = _HEADING.sub("", text)
    text = _QUOTE.sub("", text)
    text = _BULLET.sub("", text)
    text = _EMPHASIS.sub(r"\2", text)
    text = text.replace("|", " ")
    text = strip_emoji(text)
    return _join_lines(text)


def strip_emoji(text: str) -> str:
    """Remove pictographs, dingbats, variation selectors and invisible format characters (joiners,
    zero-width spaces: also the persona mark)."""
    kept = []
    for char in text:
        code = ord(char)
        if char in "\ufe0e\ufe0f\u20e3" or 0x1F3FB <= code <= 0x1F3FF:
            continue
        if unicodedata.category(char) in ("So", "Cf") or 0x1F000 <= code <= 0x1FAFF:
            continue
        kept.append(char)
    return "".join(kept)


_MARK_BITS = ("\u200b", "\u200c")  # zero-width space and non-joiner: invisible, and stripped above


def persona_mark(persona_id: str) -> str:
    """Sixteen invisible characters that differ from persona to persona, put before a reply's text.

    Home Assistant caches speech by text, language, engine and options; with the TTS voice
    `active` the options stay the same when the persona switches, so the same sentence would come
    back from HA's cache in the old persona's voice. The mark makes the cached text the persona's.
    """
    bits = int.from_bytes(hashlib.blake2s(persona_id.encode(), digest_size=2).digest(), "big")
    return "".join(_MARK_BITS[(bits >> shift) & 1] for shift in range(16))


def is_speakable(text: str) -> bool:
    """True if the text has anything a voice could say (a letter or a digit)."""
    return any(char.isalnum() for char in text)


def _url_to_words(match: re.Match) -> str:
    url = match.group(0).rstrip(".,;:!?")
    trailing = match.group(0)[len(url) :]
    host = urlparse(url if "://" in url else f"http://{url}").hostname or ""
    return host.removeprefix("www.") + trailing


def _join_lines(text: str) -> str:
    """The non-empty lines, one per line, without extra spaces (a line break still ends a sentence
    for `sentences`, so no full stop is added for it)."""
    lines = (_SPACES.sub(" ", raw).strip() for raw in text.splitlines())
    return "\n".join(line for line in lines if line).strip()
