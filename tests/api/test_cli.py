"""`wyoming-persona api` as a real process: refuses unsafe settings, serves, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp

from .conftest import Mosquitto, free_port
from .test_mqtt import next_payload, subscriber

CONFIG = "homeassistant/select/wyoming_persona/persona/config"
STATUS = "wyoming_persona/wyoming_persona/status"

WAIT = 30


async def _cli(*args: str, env: dict | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wyoming_persona",
        "api",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


async def test_refuses_network_bind_without_token(personas_dir: Path, state_dir: Path) -> None:
    env = {"WYOMING_PERSONA_API_TOKEN": ""}
    process = await _cli("--host", "0.0.0.0", "--personas-dir", str(personas_dir), env=env)
    async with asyncio.timeout(WAIT):
        _, stderr = await process.communicate()
    assert process.returncode == 2
    assert b"--token" in stderr


async def test_refuses_bad_personas_with_line_numbers(personas_dir: Path, state_dir: Path) -> None:
    (personas_dir / "pirate.yaml").write_text("name: Pirate\nprompt:\n  identity: Arr\nvoice:\n  pitch: 99\n")
    process = await _cli("--personas-dir", str(personas_dir), "--state-dir", str(state_dir))
    async with asyncio.timeout(WAIT):
        _, stderr = await process.communicate()
    assert process.returncode == 1
    assert b"pirate.yaml:5:10: voice.pitch:" in stderr


async def test_serves_with_token_and_mqtt_then_stops(
    personas_dir: Path, state_dir: Path, wyoming_service: str, mosquitto: Mosquitto
) -> None:
    port = free_port()
    process = await _cli(
        "--host", "127.0.0.1", "--port", str(port),
        "--personas-dir", str(personas_dir), "--state-dir", str(state_dir),
        "--service", f"asr={wyoming_service}",
        "--mqtt", f"mqtt://127.0.0.1:{mosquitto.port}",
        env={"WYOMING_PERSONA_API_TOKEN": "tok"},
    )  # fmt: skip
    try:
        headers = {"Authorization": "Bearer tok"}
        async with aiohttp.ClientSession() as session, asyncio.timeout(WAIT):
            while True:
                try:
                    async with session.get(
                        f"http://127.0.0.1:{port}/api/health", headers=headers
                    ) as response:
                        assert response.status == 200
                        body = await response.json()
                        break
                except aiohttp.ClientConnectionError:
                    assert process.returncode is None, "the API exited early"
                    await asyncio.sleep(0.1)
            assert body["services"][0]["ok"] is True
            async with session.get(f"http://127.0.0.1:{port}/api/active") as response:
                assert response.status == 401
        async with subscriber(mosquitto.port, CONFIG) as client:
            assert "Jeeves" in json.loads(await next_payload(client, CONFIG))["options"]
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT):
            _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert b"Ready" in stderr and b"Connected to MQTT broker" in stderr
    async with subscriber(mosquitto.port, STATUS) as client:
        assert await next_payload(client, STATUS) == "offline"


async def test_will_marks_entity_offline_when_killed(
    personas_dir: Path, state_dir: Path, mosquitto: Mosquitto
) -> None:
    process = await _cli(
        "--port", str(free_port()), "--personas-dir", str(personas_dir), "--state-dir", str(state_dir),
        "--service", "none=tcp://127.0.0.1:1", "--mqtt", f"mqtt://127.0.0.1:{mosquitto.port}",
    )  # fmt: skip
    try:
        async with subscriber(mosquitto.port, STATUS) as client:
            await next_payload(client, STATUS, lambda p: p == "online")
            process.kill()  # no chance to say goodbye: the broker publishes the will
            assert await next_payload(client, STATUS) == "offline"
    finally:
        if process.returncode is None:
            process.kill()
        async with asyncio.timeout(WAIT):
            await process.communicate()
