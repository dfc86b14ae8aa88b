"""A question back before a risky guess: "Shall I close the garage door?", then "yes" does it.

A door, a lock, an alarm or the heating is acted on only when the words named it for sure (HA's
templates, or the grammar with every word of the device's name). A looser guess - a stand-in word, an
"it" from an earlier clause, the LLM's function call - is asked back instead, and the action waits in
its conversation for the user's answer. Home Assistant keeps a satellite's conversation id for five
minutes, so the "yes" after the wake word comes back to the same conversation.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .model import normalize_name

CAREFUL_DOMAINS = frozenset({"cover", "lock", "alarm_control_panel", "climate", "valve", "water_heater"})
"""What costs more to do wrongly than to miss: acted on only when the words were sure."""
ANSWER_SECONDS = 120.0
"""How long a question back waits for its answer."""

_YES = re.compile(
    r"^(?:yes|yeah|yep|yup|ya|sure|ok|okay|aye|aye aye|affirmative|correct|right|absolutely|definitely"
    r"|of course|please|please do|do it|go ahead|go for it|that's right|yes please|yes do it|indeed"
    r"|very well|make it so|sounds good)(?: (?:please|thanks|thank you|do it|go ahead|sure|yes))*$"
)
_NO = re.compile(
    r"^(?:no|nope|nah|no thanks|no thank you|don't|do not|cancel|never mind|nevermind|leave it|not now"
    r"|negative|stop|forget it|no don't|no leave it)(?: (?:thanks|thank you|please))*$"
)

T = TypeVar("T")


def answer_to_question(text: str) -> bool | None:
    """True for a yes ("yes please", "go ahead"), False for a no ("no, leave it"), else None."""
    words = normalize_name(text)
    if _YES.match(words):
        return True
    if _NO.match(words):
        return False
    return None


@dataclass
class PendingActions(Generic[T]):
    """Per conversation, the one action waiting for a yes; older than ANSWER_SECONDS is forgotten."""

    seconds: float = ANSWER_SECONDS
    clock: Callable[[], float] = time.monotonic
    _waiting: dict[str, tuple[float, T]] = field(default_factory=dict)

    def put(self, conversation_id: str, action: T) -> None:
        self._drop_old()
        self._waiting[conversation_id] = (self.clock() + self.seconds, action)

    def take(self, conversation_id: str) -> T | None:
        """The action waiting in this conversation (removed), or None."""
        self._drop_old()
        waiting = self._waiting.pop(conversation_id, None)
        return waiting[1] if waiting is not None else None

    def waiting(self, conversation_id: str) -> bool:
        """An action waits in this conversation (it stays there)."""
        self._drop_old()
        return conversation_id in self._waiting

    def _drop_old(self) -> None:
        now = self.clock()
        for key in [key for key, (until, _) in self._waiting.items() if until < now]:
            del self._waiting[key]
