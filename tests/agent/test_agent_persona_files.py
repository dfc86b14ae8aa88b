"""The persona service reads personas from memory: edits and switches arrive through the watcher."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from wyoming_persona.agent.backends import OllamaSettings
from wyoming_persona.agent.backends.ollama import OllamaChatBackend
from wyoming_persona.personas import PersonaManager
from wyoming_persona.personas.state import ActivePersonaStore

from .conftest import handled, persona_server, say

WAIT = 20


async def test_requests_never_parse_persona_files_on_the_event_loop(
    fake_ollama, personas_dir: Path, state_dir: Path, persona_file_reads: list[int]
) -> None:
    threads = persona_file_reads
    manager = PersonaManager(personas_dir, state_dir, refresh_interval=0.05)
    threads.clear()  # the constructor's load is the one-shot synchronous path
    loop_thread = threading.get_ident()
    backend = OllamaChatBackend(OllamaSettings(host=fake_ollama.url))
    pirate = personas_dir / "pirate.yaml"
    try:
        async with manager.watching(), persona_server(manager, backend) as (server, _):
            pirate.write_text(pirate.read_text().replace("Captain Barnacle", "Captain Seaweed"))
            # No clear() here: the watcher's thread may already be reading these writes.
            ActivePersonaStore(state_dir).write("pirate")  # another process switches
            first = await say(server.port, "Who are you?", "c")  # served whatever the watcher has now
            async with asyncio.timeout(WAIT):
                # read in a thread: only the requests' own reads may show up on the loop thread
                while await asyncio.to_thread(lambda: manager.active().name) != "Captain Seaweed":  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            second = await say(server.port, "Who are you?", "c")
    finally:
        await backend.close()
    assert handled(first).data["text"]
    assert "Captain Seaweed" in handled(second).data["text"]
    assert threads, "the watcher did the reading"
    assert loop_thread not in threads, "no persona or state file was read on the event loop"
