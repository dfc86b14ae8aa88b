"""`wyoming-persona tts --uri stdio://` as a subprocess: describe, then a synthesize in the active voice."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from wyoming.event import Event, async_read_event, async_write_event
from wyoming.info import Info

from .conftest import TIMEOUT


async def test_stdio_subcommand_smoke(tts_personas: Path, state_dir: Path) -> None:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wyoming_persona",
        "tts",
        "--uri",
        "stdio://",
        "--personas-dir",
        str(tts_personas),
        "--state-dir",
        str(state_dir),
        "--default-persona",
        "deep",
        "--noise-scale",
        "0",
        "--max-voices",
        "1",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    try:
        async with asyncio.timeout(TIMEOUT):
            await async_write_event(Event("describe"), process.stdin)
            info = await async_read_event(process.stdout)
            assert info is not None and info.type == "info"
            names = [voice.name for voice in Info.from_event(info).tts[0].voices]
            assert "deep" in names and "en_US-joe-medium" in names

            await async_write_event(
                Event("synthesize", {"text": "Hello from the command line."}), process.stdin
            )
            types = []
            while not types or types[-1] != "audio-stop":
                event = await async_read_event(process.stdout)
                assert event is not None, await process.stderr.read()
                types.append(event.type)
            assert types[0] == "audio-start" and "audio-chunk" in types
            process.stdin.close()
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    stderr = (await process.stderr.read()).decode()
    assert "Loaded voice en_US-joe-medium" in stderr
    assert "spoke 1 sentences as deep" in stderr
