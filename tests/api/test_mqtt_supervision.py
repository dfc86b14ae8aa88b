"""The MQTT persona select survives errors that are not broker trouble (real Mosquitto broker)."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

from wyoming_persona.api.cli import _bridge_ended
from wyoming_persona.api.lookup import option_labels
from wyoming_persona.api.mqtt import PersonaSelect, cancel_and_wait
from wyoming_persona.personas import Persona, PersonaManager

from .conftest import Mosquitto
from .test_mqtt import (
    AVAILABILITY_TOPIC,
    COMMAND_TOPIC,
    STATE_TOPIC,
    WAIT,
    _settings,
    next_payload,
    subscriber,
)


class FlakyManager(PersonaManager):
    """A real manager whose `active()` raises once, when armed."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._armed = False

    def arm(self) -> None:
        with self._lock:
            self._armed = True

    def active(self) -> Persona:
        with self._lock:
            armed, self._armed = self._armed, False
        if armed:
            raise RuntimeError("injected failure")
        return super().active()


async def test_unexpected_error_is_logged_and_the_bridge_keeps_working(
    personas_dir: Path, state_dir: Path, mosquitto: Mosquitto, caplog
) -> None:
    manager = FlakyManager(personas_dir, state_dir, refresh_interval=0.0)
    select = PersonaSelect(manager, _settings(mosquitto.port))
    task = asyncio.create_task(select.run())
    try:
        async with subscriber(mosquitto.port, STATE_TOPIC, AVAILABILITY_TOPIC) as client:
            await next_payload(client, AVAILABILITY_TOPIC, lambda p: p == "online")
            target = next(p for p in manager.personas.values() if p.id != manager.active().id)
            label = option_labels(manager.personas)[target.id]

            manager.arm()  # handling this switch, the bridge's look at the active persona fails
            await client.publish(COMMAND_TOPIC, label, qos=1)
            await next_payload(client, AVAILABILITY_TOPIC, lambda p: p == "offline")
            await next_payload(client, AVAILABILITY_TOPIC, lambda p: p == "online")

            await client.publish(COMMAND_TOPIC, label, qos=1)  # a later switch still works
            assert await next_payload(client, STATE_TOPIC, lambda p: p == label) == label
        assert manager.active().id == target.id
        assert not task.done()
    finally:
        async with asyncio.timeout(WAIT):
            await cancel_and_wait([task])
    logged = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], RuntimeError)]
    assert len(logged) == 1, logged
    assert logged[0].levelno == logging.ERROR and "restarting" in logged[0].getMessage()


async def test_a_bridge_that_ends_is_not_silent(caplog) -> None:
    task = asyncio.create_task(asyncio.sleep(0))
    task.add_done_callback(_bridge_ended)
    await task
    await asyncio.sleep(0)  # done callbacks run on the next loop turn
    assert any("MQTT persona select stopped" in r.getMessage() for r in caplog.records)
