"""Per-conversation chat history: bounded turns, idle expiry, one history per (persona, conversation)."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .backends import ChatMessage

DEFAULT_MAX_TURNS = 8
DEFAULT_TTL = 600.0
DEFAULT_MAX_CONVERSATIONS = 256


def new_conversation_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class HistorySettings:
    max_turns: int = DEFAULT_MAX_TURNS
    """User/assistant exchanges kept per conversation; the oldest go first."""
    ttl: float = DEFAULT_TTL
    """Seconds of silence after which a conversation is forgotten."""
    max_conversations: int = DEFAULT_MAX_CONVERSATIONS
    """Histories kept, one per persona and conversation; the least recently used go first."""


@dataclass
class _Conversation:
    turns: list[tuple[str, str]] = field(default_factory=list)
    last_used: float = 0.0


Key = tuple[str, str]
"""(persona id, conversation id)."""


class ConversationStore:
    """History lives in the process, keyed by (persona, conversation_id).

    Two personas never share a history, even in one conversation id: a persona pinned to its own
    agent (`--pinned-persona`) and the active persona each remember only what was said to them. The
    system prompt is not stored: it is rebuilt from the persona on every request and always comes
    first, so trimming can never drop it.
    """

    def __init__(self, settings: HistorySettings | None = None, clock: Callable[[], float] = time.monotonic):
        self.settings = settings or HistorySettings()
        self._clock = clock
        self._conversations: OrderedDict[Key, _Conversation] = OrderedDict()

    def __len__(self) -> int:
        return len(self._conversations)

    def messages(
        self,
        conversation_id: str,
        persona_id: str,
        system_prompt: str,
        text: str,
        examples: Sequence[tuple[str, str]] = (),
    ) -> list[ChatMessage]:
        """System prompt, the persona's example turns, the kept history of this conversation with this
        persona, then the user's text. The examples come first so that the real exchanges, the ones
        holding what the user said, are the closest to the question."""
        messages: list[ChatMessage] = [{"role": "system", "content": system_prompt}]
        for user, assistant in (*examples, *self.turns(conversation_id, persona_id)):
            messages.append({"role": "user", "content": user})
            messages.append({"role": "assistant", "content": assistant})
        messages.append({"role": "user", "content": text})
        return messages

    def turns(self, conversation_id: str, persona_id: str) -> list[tuple[str, str]]:
        self._expire()
        conversation = self._conversations.get((persona_id, conversation_id))
        return [] if conversation is None else list(conversation.turns)

    def add_turn(self, conversation_id: str, persona_id: str, user: str, assistant: str) -> None:
        self._expire()
        key = (persona_id, conversation_id)
        conversation = self._conversations.get(key)
        if conversation is None:
            conversation = _Conversation()
            self._conversations[key] = conversation
        conversation.turns.append((user, assistant))
        del conversation.turns[: -self.settings.max_turns or None]
        conversation.last_used = self._clock()
        self._conversations.move_to_end(key)
        while len(self._conversations) > self.settings.max_conversations:
            self._conversations.popitem(last=False)

    def reset(self, conversation_id: str) -> None:
        """Forget the conversation with every persona (a persona switch starts it over)."""
        for key in [key for key in self._conversations if key[1] == conversation_id]:
            del self._conversations[key]

    def _expire(self) -> None:
        deadline = self._clock() - self.settings.ttl
        while self._conversations:
            key, oldest = next(iter(self._conversations.items()))
            if oldest.last_used > deadline:
                break
            del self._conversations[key]
