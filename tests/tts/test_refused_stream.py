"""A refused or empty text stream still ends with synthesize-stopped, so a client like Home Assistant
(which ignores `error` and reads until synthesize-stopped) never waits for ever."""

from __future__ import annotations

import pytest
from wyoming.event import Event

from .conftest import JOE, TEST_MAX_CHARS, Client, speak


async def stream_like_home_assistant(client: Client, *chunks: str) -> list[Event]:
    """What HA's wyoming tts streaming sends, and its reader: events until synthesize-stopped (or EOF)."""
    await client.send("synthesize-start", voice={"name": JOE})
    for chunk in chunks:
        await client.send("synthesize-chunk", text=chunk)
    await client.send("synthesize", text="".join(chunks), voice={"name": JOE})  # the compat copy
    await client.send("synthesize-stop")
    events = []
    while (event := await client.read()) is not None:
        events.append(event)
        if event.type == "synthesize-stopped":
            break
    return events


@pytest.mark.parametrize(
    ("chunks", "code"),
    [
        (("word " * (TEST_MAX_CHARS // 5 + 1), "The end."), "too-long"),
        (("😀 ", "🎉 ..."), "empty-text"),
    ],
)
async def test_refused_stream_gets_its_error_and_synthesize_stopped(
    client: Client, chunks: tuple[str, ...], code: str
) -> None:
    events = await stream_like_home_assistant(client, *chunks)
    assert [e.type for e in events] == ["error", "synthesize-stopped"], [e.type for e in events]
    assert events[0].data["code"] == code
    # The compat copy was not spoken, and the connection keeps working.
    samples, _, _ = await speak(client, "Still here.", JOE)
    assert len(samples) > 0
