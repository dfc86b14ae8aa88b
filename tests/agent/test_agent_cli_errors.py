"""`wyoming-persona persona` as a subprocess: a start that cannot work is one `error:` line and exit 1;
an LLM server that is down at start is a warning, and the service answers with the fallback line."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from wyoming_persona.agent.shaping import speakable_piece
from wyoming_persona.personas import PersonaManager

from .conftest import handled, say

WAIT = 60  # seconds for the process to start or to end


async def start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wyoming_persona",
        "persona",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )


async def run_to_end(*args: str) -> tuple[int, str]:
    process = await start(*args)
    try:
        async with asyncio.timeout(WAIT):
            _, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return process.returncode, stderr.decode()


def folders(personas_dir: Path, state_dir: Path) -> list[str]:
    return ["--personas-dir", str(personas_dir), "--state-dir", str(state_dir)]


async def test_broken_persona_file_is_one_error_line(personas_dir, state_dir) -> None:
    (personas_dir / "broken.yaml").write_text("name: Broken\nprompt: [unclosed\n")
    code, stderr = await run_to_end(*folders(personas_dir, state_dir), "--backend", "embedded")
    assert code == 1, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), stderr
    assert "broken.yaml:" in stderr


async def test_missing_model_file_is_one_error_line(personas_dir, state_dir, tmp_path) -> None:
    missing = tmp_path / "nope.gguf"
    args = [*folders(personas_dir, state_dir), "--backend", "embedded", "--model-path", str(missing)]
    code, stderr = await run_to_end(*args)
    assert code == 1, stderr
    assert "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == f"error: no GGUF model at {missing}", stderr


async def test_taken_port_is_one_error_line(personas_dir, state_dir, unused_tcp_port) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = [
            *folders(personas_dir, state_dir),
            *("--backend", "ollama", "--ollama-host", f"http://127.0.0.1:{unused_tcp_port}"),
            *("--uri", f"tcp://127.0.0.1:{port}"),
        ]
        code, stderr = await run_to_end(*args)
    assert code == 1, stderr
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot serve on tcp://127.0.0.1:{port}: "), stderr


@pytest.mark.parametrize(
    ("backend", "option", "url", "warning"),
    [
        (
            "ollama",
            "--ollama-host",
            "http://127.0.0.1:{port}",
            "Ollama at http://127.0.0.1:{port} does not answer",
        ),
        (
            "openai",
            "--openai-base-url",
            "http://127.0.0.1:{port}/v1",
            "OpenAI-compatible server at http://127.0.0.1:{port}/v1 does not answer",
        ),
    ],
)
async def test_unreachable_llm_server_warns_and_answers_with_the_fallback(
    personas_dir, state_dir, unused_tcp_port_factory, backend, option, url, warning
) -> None:
    dead, port = unused_tcp_port_factory(), unused_tcp_port_factory()
    args = [
        *folders(personas_dir, state_dir),
        *("--backend", backend, option, url.format(port=dead)),
        *("--uri", f"tcp://127.0.0.1:{port}"),
    ]
    process = await start(*args)
    lines: list[str] = []
    try:
        async with asyncio.timeout(WAIT):
            while not lines or "Ready on" not in lines[-1]:
                line = (await process.stderr.readline()).decode()
                assert line, f"the service ended early: {lines}"
                lines.append(line)
        assert any("WARNING" in line and warning.format(port=dead) in line for line in lines), lines

        events = await say(port, "Hello there.", "conv", wait=WAIT)
        manager = PersonaManager(personas_dir, state_dir)
        fallback = speakable_piece(manager.active().spec.fallbacks.backend_down)
        assert handled(events).data["text"] == fallback

        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT):
            rest = (await process.stderr.read()).decode()
            assert await process.wait() == 0, rest
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert "Traceback" not in "".join(lines) + rest
