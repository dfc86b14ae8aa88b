"""`wyoming-persona persona` serves the Ollama-compatible API beside the Wyoming server."""

from __future__ import annotations

import asyncio
import signal
import socket

import aiohttp
import psutil

from wyoming_persona.agent.ollama_api import DEFAULT_HOST, DEFAULT_PORT
from wyoming_persona.agent.shaping import speakable_piece
from wyoming_persona.personas import PersonaManager

from .conftest import handled, say
from .test_agent_cli_errors import WAIT, folders, run_to_end, start


async def _until_ready(process: asyncio.subprocess.Process) -> list[str]:
    lines: list[str] = []
    async with asyncio.timeout(WAIT):
        while not lines or "Ready on" not in lines[-1]:
            line = (await process.stderr.readline()).decode()
            assert line, f"the service ended early: {lines}"
            lines.append(line)
    return lines


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(WAIT):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


def _args(
    personas_dir, state_dir, dead: int, wyoming: int, *more: str, uri_host: str = "127.0.0.1"
) -> list[str]:
    return [
        *folders(personas_dir, state_dir),
        *("--backend", "ollama", "--ollama-host", f"http://127.0.0.1:{dead}"),
        *("--uri", f"tcp://{uri_host}:{wyoming}"),
        *more,
    ]


async def test_both_servers_share_one_persona_chat(personas_dir, state_dir, unused_tcp_port_factory):
    """The API lists the personas and answers with the same fallback line as the Wyoming side (the
    Ollama backend is down); a start log line gives its address."""
    dead, wyoming, api = (unused_tcp_port_factory() for _ in range(3))
    args = _args(
        personas_dir,
        state_dir,
        dead,
        wyoming,
        "--ollama-api-host",
        "127.0.0.1",
        "--ollama-api-port",
        str(api),
    )
    process = await start(*args)
    try:
        lines = await _until_ready(process)
        assert any(f"Ollama-compatible API on http://127.0.0.1:{api}" in line for line in lines), lines
        fallback = speakable_piece(
            PersonaManager(personas_dir, state_dir).active().spec.fallbacks.backend_down
        )
        body = {"model": "persona", "messages": [{"role": "user", "content": "Hi"}], "stream": False}
        async with asyncio.timeout(WAIT), aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{api}/api/tags") as response:
                names = [model["name"] for model in (await response.json())["models"]]
            async with http.post(f"http://127.0.0.1:{api}/api/chat", json=body) as response:
                reply = await response.json()
        assert "persona:latest" in names and "pirate:latest" in names
        assert reply["message"]["content"] == fallback and reply["done"]
        assert handled(await say(wyoming, "Hi", "c", wait=WAIT)).data["text"] == fallback
    finally:
        await _stop(process)


async def test_a_taken_api_port_is_a_warning_and_the_agent_serves(
    personas_dir, state_dir, unused_tcp_port_factory
):
    dead, wyoming = unused_tcp_port_factory(), unused_tcp_port_factory()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = _args(
            personas_dir,
            state_dir,
            dead,
            wyoming,
            "--ollama-api-host",
            "127.0.0.1",
            "--ollama-api-port",
            str(port),
        )
        process = await start(*args)
        try:
            lines = await _until_ready(process)
            assert any("WARNING" in line and "Ollama-compatible API not started" in line for line in lines), (
                lines
            )
            assert handled(await say(wyoming, "Who are you?", "c", wait=WAIT)).data["text"]
        finally:
            await _stop(process)


async def test_port_zero_turns_the_api_off(personas_dir, state_dir, unused_tcp_port_factory):
    dead, wyoming = unused_tcp_port_factory(), unused_tcp_port_factory()
    process = await start(*_args(personas_dir, state_dir, dead, wyoming, "--ollama-api-port", "0"))
    try:
        lines = await _until_ready(process)
        assert not any("Ollama-compatible API" in line for line in lines), lines
    finally:
        await _stop(process)


def test_the_defaults_sit_next_to_the_wyoming_port_on_loopback():
    assert (DEFAULT_HOST, DEFAULT_PORT) == ("127.0.0.1", 10501)


# -- where it listens, on the real sockets ------------------------------------------------------------
def _listening(process: asyncio.subprocess.Process) -> dict[int, str]:
    """Port -> address of every TCP socket the process listens on."""
    connections = psutil.Process(process.pid).net_connections(kind="tcp")
    return {c.laddr.port: c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN}


async def test_the_api_and_the_metrics_stay_on_loopback_when_the_wyoming_port_is_opened(
    personas_dir, state_dir, unused_tcp_port_factory
):
    """The add-on's --uri tcp://0.0.0.0 once took the metrics (and the API's default) along with it."""
    dead, wyoming, api, metrics = (unused_tcp_port_factory() for _ in range(4))
    more = ("--ollama-api-port", str(api), "--metrics-port", str(metrics))
    process = await start(*_args(personas_dir, state_dir, dead, wyoming, *more, uri_host="0.0.0.0"))
    try:
        await _until_ready(process)
        assert _listening(process) == {wyoming: "0.0.0.0", api: "127.0.0.1", metrics: "127.0.0.1"}
    finally:
        await _stop(process)


async def test_a_non_loopback_api_without_a_token_is_refused_at_start(
    personas_dir, state_dir, unused_tcp_port_factory
):
    dead, wyoming, api = (unused_tcp_port_factory() for _ in range(3))
    more = ("--ollama-api-host", "0.0.0.0", "--ollama-api-port", str(api))
    code, stderr = await run_to_end(*_args(personas_dir, state_dir, dead, wyoming, *more))
    assert code == 1, stderr
    assert stderr.strip() == (
        "error: --ollama-api-host 0.0.0.0 is not a loopback address: set --ollama-api-token (or "
        "WYOMING_PERSONA_OLLAMA_API_TOKEN), or pass --ollama-api-unauthenticated if only trusted "
        "machines can reach that address"
    )


async def test_the_add_on_flags_open_the_api_and_the_metrics_without_a_token(
    personas_dir, state_dir, unused_tcp_port_factory
):
    """What the persona add-on passes: HA reaches the API over the add-on network, with no token."""
    dead, wyoming, api, metrics = (unused_tcp_port_factory() for _ in range(4))
    more = (
        *("--ollama-api-host", "0.0.0.0", "--ollama-api-unauthenticated", "--ollama-api-port", str(api)),
        *("--metrics-host", "0.0.0.0", "--metrics-port", str(metrics)),
    )
    process = await start(*_args(personas_dir, state_dir, dead, wyoming, *more))
    try:
        await _until_ready(process)
        assert _listening(process) == {wyoming: "127.0.0.1", api: "0.0.0.0", metrics: "0.0.0.0"}
        async with (
            asyncio.timeout(WAIT),
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{api}/api/tags") as response,
        ):
            assert response.status == 200
    finally:
        await _stop(process)


async def test_a_token_from_the_environment_guards_the_api(
    personas_dir, state_dir, unused_tcp_port_factory, monkeypatch
):
    monkeypatch.setenv("WYOMING_PERSONA_OLLAMA_API_TOKEN", "tok-3n")
    dead, wyoming, api = (unused_tcp_port_factory() for _ in range(3))
    more = ("--ollama-api-host", "0.0.0.0", "--ollama-api-port", str(api))
    process = await start(*_args(personas_dir, state_dir, dead, wyoming, *more))
    try:
        lines = await _until_ready(process)
        assert _listening(process)[api] == "0.0.0.0"
        assert not any("tok-3n" in line for line in lines), "the token must stay out of the log"
        statuses = []
        async with asyncio.timeout(WAIT), aiohttp.ClientSession() as http:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer tok-3n"}):
                async with http.get(f"http://127.0.0.1:{api}/api/tags", headers=headers) as response:
                    statuses.append(response.status)
        assert statuses == [401, 401, 200]
    finally:
        await _stop(process)
