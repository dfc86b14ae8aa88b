"""The TTS service reads personas from memory: edits and switches arrive through the watcher."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
from wyoming.info import Info

from wyoming_persona.personas.state import ActivePersonaStore

from .conftest import TIMEOUT, Client, speak, start_service, write_persona


async def voice_names(client: Client) -> set[str]:
    await client.send("describe")
    event = await client.read()
    assert event is not None and event.type == "info"
    return {voice.name for voice in Info.from_event(event).tts[0].voices}


async def test_requests_never_parse_persona_files_on_the_event_loop(
    tts_personas: Path, state_dir: Path, voices_dir: Path, persona_file_reads: list[int]
) -> None:
    threads = persona_file_reads
    service = await start_service(tts_personas, state_dir, voices_dir)
    manager = service.manager
    threads.clear()  # the constructor's load is the one-shot synchronous path
    loop_thread = threading.get_ident()
    text = "Hello there."
    try:
        async with manager.watching():
            client = await Client.connect(service.port)
            try:
                write_persona(tts_personas, "extra", 1.0, 0.0, "en_US-joe-medium")
                ActivePersonaStore(state_dir).write("deep")  # another process switches
                await voice_names(client)  # served whatever the watcher has now
                await speak(client, text)

                async def seen() -> bool:
                    # read in a thread: only the requests' own reads may show up on the loop thread
                    return await asyncio.to_thread(
                        lambda: manager.active().id == "deep" and "extra" in manager.personas
                    )

                async with asyncio.timeout(TIMEOUT):
                    while not await seen():  # noqa: ASYNC110 - the watcher's work, in its thread
                        await asyncio.sleep(0.02)
                assert "extra" in await voice_names(client)
                active, _, _ = await speak(client, text)
                deep, _, _ = await speak(client, text, "deep")
            finally:
                await client.close()
    finally:
        await service.server.close()
    assert np.array_equal(active, deep), "the active voice follows the switch"
    assert threads, "the watcher did the reading"
    assert loop_thread not in threads, "no persona or state file was read on the event loop"
