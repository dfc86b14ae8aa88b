"""The MQTT persona select against a real Mosquitto broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiomqtt
import pytest

from wyoming_persona.api.mqtt import PersonaSelect, cancel_and_wait
from wyoming_persona.api.settings import MqttSettings
from wyoming_persona.personas import PersonaManager

from .conftest import Mosquitto

NODE = "test_node"
CONFIG_TOPIC = f"homeassistant/select/{NODE}/persona/config"
STATE_TOPIC = f"wyoming_persona/{NODE}/persona/state"
COMMAND_TOPIC = f"wyoming_persona/{NODE}/persona/set"
AVAILABILITY_TOPIC = f"wyoming_persona/{NODE}/status"
WAIT = 20  # seconds; generous because other test suites share the CPU


def _settings(port: int) -> MqttSettings:
    return MqttSettings(
        host="127.0.0.1", port=port, node_id=NODE, poll_interval=0.05, reconnect_min=0.1, reconnect_max=0.5
    )


@pytest.fixture
async def bridge(manager: PersonaManager, mosquitto: Mosquitto) -> AsyncIterator[PersonaSelect]:
    select = PersonaSelect(manager, _settings(mosquitto.port))
    task = asyncio.create_task(select.run())
    try:
        async with asyncio.timeout(WAIT):
            await select.connected.wait()
        yield select
    finally:
        async with asyncio.timeout(WAIT):
            await cancel_and_wait([task])


@contextlib.asynccontextmanager
async def subscriber(port: int, *topics: str) -> AsyncIterator[aiomqtt.Client]:
    async with asyncio.timeout(WAIT):
        client = aiomqtt.Client("127.0.0.1", port, identifier=None)
        await client.__aenter__()
        for topic in topics:
            await client.subscribe(topic, qos=1)
    try:
        yield client
    finally:
        async with asyncio.timeout(WAIT):
            with contextlib.suppress(aiomqtt.MqttError):
                await client.__aexit__(None, None, None)


async def next_payload(
    client: aiomqtt.Client, topic: str, accept: Callable[[str], bool] = lambda _: True
) -> str:
    async with asyncio.timeout(WAIT):
        async for message in client.messages:
            payload = message.payload.decode() if isinstance(message.payload, bytes) else ""
            if message.topic.matches(topic) and accept(payload):
                return payload
    raise AssertionError("message iteration ended")


async def test_discovery_payload(
    bridge: PersonaSelect, manager: PersonaManager, mosquitto: Mosquitto
) -> None:
    async with subscriber(mosquitto.port, CONFIG_TOPIC, STATE_TOPIC, AVAILABILITY_TOPIC) as client:
        config = json.loads(await next_payload(client, CONFIG_TOPIC))
        assert config["name"] == "Persona"
        assert config["unique_id"] == f"{NODE}_persona"
        assert config["options"] == [p.name for p in manager.personas.values()]
        assert config["command_topic"] == COMMAND_TOPIC
        assert config["state_topic"] == STATE_TOPIC
        assert config["availability_topic"] == AVAILABILITY_TOPIC
        assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
        assert config["device"]["identifiers"] == [NODE]
    # retained: a client that subscribes later still gets all three
    async with subscriber(mosquitto.port, STATE_TOPIC) as client:
        assert await next_payload(client, STATE_TOPIC) == manager.get("assistant").name
    async with subscriber(mosquitto.port, AVAILABILITY_TOPIC) as client:
        assert await next_payload(client, AVAILABILITY_TOPIC) == "online"


async def test_command_sets_active(
    bridge: PersonaSelect, manager: PersonaManager, mosquitto: Mosquitto
) -> None:
    pirate = manager.get("pirate").name
    async with subscriber(mosquitto.port, STATE_TOPIC) as client:
        await next_payload(client, STATE_TOPIC, lambda p: p != pirate)
        await client.publish(COMMAND_TOPIC, pirate, qos=1)
        assert await next_payload(client, STATE_TOPIC, lambda p: p == pirate) == pirate
    assert manager.active().id == "pirate"


async def test_unknown_command_republishes_current(
    bridge: PersonaSelect, manager: PersonaManager, mosquitto: Mosquitto
) -> None:
    current = manager.active().name
    async with subscriber(mosquitto.port, STATE_TOPIC) as client:
        await next_payload(client, STATE_TOPIC)  # the retained state
        await client.publish(COMMAND_TOPIC, "Nobody At All", qos=1)
        assert await next_payload(client, STATE_TOPIC) == current
    assert manager.active().name == current


async def test_external_switch_is_published(
    bridge: PersonaSelect, personas_dir: Path, state_dir: Path, mosquitto: Mosquitto
) -> None:
    other_process = PersonaManager(personas_dir, state_dir)  # like the CLI or the persona service
    robot = other_process.get("robot").name
    async with subscriber(mosquitto.port, STATE_TOPIC) as client:
        await next_payload(client, STATE_TOPIC, lambda p: p != robot)
        other_process.set_active("robot")
        assert await next_payload(client, STATE_TOPIC, lambda p: p == robot) == robot


async def test_reload_updates_options(
    bridge: PersonaSelect, personas_dir: Path, mosquitto: Mosquitto
) -> None:
    async with subscriber(mosquitto.port, CONFIG_TOPIC) as client:
        first = json.loads(await next_payload(client, CONFIG_TOPIC))
        assert "Captain Test" not in first["options"]
        (personas_dir / "captain.yaml").write_text(
            "name: Captain Test\nprompt:\n  identity: You are Captain Test.\n"
        )
        updated = json.loads(
            await next_payload(client, CONFIG_TOPIC, lambda p: "Captain Test" in json.loads(p)["options"])
        )
        assert updated["options"] == sorted([*first["options"], "Captain Test"], key=_option_order(first))
        (personas_dir / "captain.yaml").unlink()
        final = json.loads(
            await next_payload(client, CONFIG_TOPIC, lambda p: "Captain Test" not in json.loads(p)["options"])
        )
        assert final["options"] == first["options"]


def _option_order(first: dict) -> Callable[[str], tuple]:
    """Options follow persona ids (sorted); the new persona's id is `captain`."""
    ids = ["assistant", "butler", "captain", "coach", "pirate", "robot"]
    names = dict(zip(["assistant", "butler", "coach", "pirate", "robot"], first["options"], strict=True))
    names["captain"] = "Captain Test"
    order = {name: ids.index(pid) for pid, name in names.items()}
    return lambda option: (order[option],)


async def test_reconnect_republishes(
    bridge: PersonaSelect, manager: PersonaManager, personas_dir: Path, state_dir: Path, mosquitto: Mosquitto
) -> None:
    await mosquitto.kill()  # retained messages die with it (persistence false)
    async with asyncio.timeout(WAIT):
        while bridge.connected.is_set():  # noqa: ASYNC110 - polling the bridge's own flag
            await asyncio.sleep(0.05)
    PersonaManager(personas_dir, state_dir).set_active("butler")  # a switch while the broker is down
    await mosquitto.start()
    async with asyncio.timeout(WAIT):
        await bridge.connected.wait()
    butler = manager.get("butler").name
    async with subscriber(mosquitto.port, CONFIG_TOPIC, STATE_TOPIC, AVAILABILITY_TOPIC) as client:
        config = json.loads(await next_payload(client, CONFIG_TOPIC))
        assert butler in config["options"]
    async with subscriber(mosquitto.port, STATE_TOPIC) as client:
        assert await next_payload(client, STATE_TOPIC) == butler
    async with subscriber(mosquitto.port, AVAILABILITY_TOPIC) as client:
        assert await next_payload(client, AVAILABILITY_TOPIC) == "online"
    # commands work on the new session
    pirate = manager.get("pirate").name
    async with subscriber(mosquitto.port, STATE_TOPIC) as client:
        await client.publish(COMMAND_TOPIC, pirate, qos=1)
        await next_payload(client, STATE_TOPIC, lambda p: p == pirate)
    assert manager.active().id == "pirate"


async def test_offline_on_shutdown_and_birth_republish(manager: PersonaManager, mosquitto: Mosquitto) -> None:
    select = PersonaSelect(manager, _settings(mosquitto.port))
    task = asyncio.create_task(select.run())
    try:
        async with asyncio.timeout(WAIT):
            await select.connected.wait()
        async with subscriber(mosquitto.port, CONFIG_TOPIC) as client:
            await next_payload(client, CONFIG_TOPIC)  # retained copy
            await client.publish("homeassistant/status", "online", qos=1)  # HA restarted
            await next_payload(client, CONFIG_TOPIC)  # published again
    finally:
        async with asyncio.timeout(WAIT):
            await cancel_and_wait([task])
    async with subscriber(mosquitto.port, AVAILABILITY_TOPIC) as client:
        assert await next_payload(client, AVAILABILITY_TOPIC) == "offline"
