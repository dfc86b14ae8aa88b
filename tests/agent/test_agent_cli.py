"""`wyoming-persona persona --uri stdio://` as a real subprocess: describe, one turn, clean exit."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from wyoming.asr import Transcript
from wyoming.event import async_read_event, async_write_event
from wyoming.info import Describe, Info

SCRIPT = Path(sys.executable).parent / "wyoming-persona"

pytestmark = pytest.mark.model


async def test_stdio_smoke_with_auto_backend(personas_dir, state_dir, unused_tcp_port):
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "persona",
        "--uri",
        "stdio://",
        "--backend",
        "auto",
        "--ollama-host",
        f"http://127.0.0.1:{unused_tcp_port}",
        "--personas-dir",
        str(personas_dir),
        "--state-dir",
        str(state_dir),
        "--seed",
        "0",
        "--n-threads",
        "2",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )
    try:
        async with asyncio.timeout(180):
            await async_write_event(Describe().event(), process.stdin)
            info = Info.from_event(await async_read_event(process.stdout))
            assert info.handle[0].supports_handled_streaming

            transcript = Transcript("Say hello in one sentence.", context={"conversation_id": "smoke"})
            await async_write_event(transcript.event(), process.stdin)
            types, text = [], None
            while not types or types[-1] != "handled-stop":
                event = await async_read_event(process.stdout)
                assert event is not None, "the server closed stdout early"
                types.append(event.type)
                if event.type == "handled":
                    text = event.data["text"]
                    assert event.data["context"]["conversation_id"] == "smoke"
            assert types[0] == "handled-start" and "handled-chunk" in types
            assert text and text.strip()

            process.stdin.close()
            stderr = (await process.stderr.read()).decode()
            assert await process.wait() == 0, stderr
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert "using the embedded model" in stderr
    assert "Ready on stdio://" in stderr
    assert "Traceback" not in stderr
