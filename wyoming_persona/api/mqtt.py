"""The persona as a Home Assistant MQTT `select` entity (MQTT discovery).

Options are the persona names, the state is the active persona, a command from HA switches it. A
switch made any other way (API, voice, CLI: all of them write the shared state file) is picked up by
polling `PersonaManager.watch()` and published. A reload republishes the config with the new
options. When the broker goes away the bridge reconnects with backoff and republishes everything;
config, state and availability are retained, and the will marks the entity unavailable meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import aiomqtt

from .. import __version__
from ..personas import Persona, PersonaManager
from .lookup import find_persona, option_labels
from .metrics import ApiMetrics
from .settings import MqttSettings

_LOGGER = logging.getLogger(__name__)

ONLINE = "online"
OFFLINE = "offline"
_PROJECT_URL = "https://github.com/wyoming-persona/wyoming-persona"


class PersonaSelect:
    """Keeps one MQTT select entity in step with the persona manager, across broker restarts."""

    def __init__(
        self, manager: PersonaManager, settings: MqttSettings, metrics: ApiMetrics | None = None
    ) -> None:
        self.manager = manager
        self.settings = settings
        self.metrics = metrics
        base = settings.base_topic
        self.config_topic = f"{settings.discovery_prefix}/select/{settings.node_id}/persona/config"
        self.state_topic = f"{base}/persona/state"
        self.command_topic = f"{base}/persona/set"
        self.availability_topic = f"{base}/status"
        self.ha_status_topic = f"{settings.discovery_prefix}/status"
        self.connected = asyncio.Event()
        """Set while a session is up and the entity has been published (tests wait on it)."""
        self._published_options: list[str] | None = None
        self._published_state: str | None = None

    # -- payloads ------------------------------------------------------------------------------
    def discovery_config(self, personas: dict[str, Persona] | Any) -> dict[str, Any]:
        settings = self.settings
        return {
            "name": "Persona",
            "unique_id": f"{settings.node_id}_persona",
            "icon": "mdi:account-voice",
            "options": list(option_labels(personas).values()),
            "command_topic": self.command_topic,
            "state_topic": self.state_topic,
            "availability_topic": self.availability_topic,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "qos": 1,
            "device": {
                "identifiers": [settings.node_id],
                "name": "Wyoming Persona",
                "manufacturer": "wyoming-persona",
                "model": "Persona manager",
                "sw_version": __version__,
            },
            "origin": {"name": "wyoming-persona", "sw_version": __version__, "support_url": _PROJECT_URL},
        }

    # -- lifecycle -----------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, publish and serve until cancelled; reconnect with backoff on any failure.

        Broker trouble (MqttError) is expected and logged as a line. Anything else is a bug or a
        broken personas folder: it is logged with its traceback and the bridge starts over with the
        same backoff, so one bad moment never ends the entity for good while the API keeps running.
        """
        settings = self.settings
        delay = settings.reconnect_min
        while True:
            will = aiomqtt.Will(self.availability_topic, OFFLINE, qos=1, retain=True)
            client = aiomqtt.Client(
                settings.host,
                settings.port,
                username=settings.username,
                password=settings.password,
                identifier=f"wyoming-persona-{settings.node_id}",
                will=will,
                timeout=10,
            )
            try:
                async with client:
                    _LOGGER.info("Connected to MQTT broker %s:%d", settings.host, settings.port)
                    delay = settings.reconnect_min
                    await self._session(client)
            except aiomqtt.MqttError as err:
                _LOGGER.warning(
                    "MQTT broker %s:%d: %s; retrying in %.0f s", settings.host, settings.port, err, delay
                )
            except Exception:  # the bridge's one boundary: log it, then start over like a reconnect
                _LOGGER.exception("MQTT persona select failed; restarting in %.0f s", delay)
            finally:
                self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, settings.reconnect_max)

    async def close(self, client: aiomqtt.Client) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(self.availability_topic, OFFLINE, qos=1, retain=True)

    async def _session(self, client: aiomqtt.Client) -> None:
        self._published_options = None
        self._published_state = None
        tasks: set[asyncio.Task] = set()
        try:
            await client.subscribe(self.command_topic, qos=1)
            await client.subscribe(self.ha_status_topic, qos=1)
            await self._publish_all(client)
            self.connected.set()
            tasks = {
                asyncio.create_task(self._commands(client), name="mqtt-commands"),
                asyncio.create_task(self._follow(client), name="mqtt-follow"),
            }
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raise so that run() reconnects
        except aiomqtt.MqttError:
            raise  # the broker connection is gone: the will marks the entity unavailable
        except BaseException:  # cancelled, or failed with the connection still up: say so ourselves
            # Stop the tasks first (a republish in flight must not land after "offline"); cancel
            # them often, as a lost cancel would otherwise eat the caller's own patience.
            await cancel_and_wait(tasks, every=0.05)
            await self.close(client)
            raise
        finally:
            await cancel_and_wait(tasks)

    # -- publishing ----------------------------------------------------------------------------
    async def _publish_all(self, client: aiomqtt.Client) -> None:
        # A (re)connect may follow a long outage: publish what the files say now.
        await asyncio.to_thread(self.manager.refresh)
        personas = self.manager.personas
        await self._publish_config(client, personas)
        await client.publish(self.availability_topic, ONLINE, qos=1, retain=True)
        await self._publish_state(client, self.manager.active(), personas)

    async def _publish_config(self, client: aiomqtt.Client, personas: Any) -> None:
        config = self.discovery_config(personas)
        await client.publish(self.config_topic, json.dumps(config), qos=1, retain=True)
        self._published_options = config["options"]
        _LOGGER.info("Published MQTT select with %d personas", len(config["options"]))

    async def _publish_state(self, client: aiomqtt.Client, active: Persona, personas: Any) -> None:
        label = option_labels(personas).get(active.id, active.name)
        await client.publish(self.state_topic, label, qos=1, retain=True)
        self._published_state = label
        _LOGGER.debug("Published active persona %r", label)

    async def _follow(self, client: aiomqtt.Client) -> None:
        """Publish reloads (new options) and switches made anywhere (the shared state file)."""
        async for snapshot, active in self.manager.watch(self.settings.poll_interval):
            options = list(option_labels(snapshot.personas).values())
            if options != self._published_options:
                await self._publish_config(client, snapshot.personas)
            label = option_labels(snapshot.personas).get(active.id, active.name)
            if label != self._published_state:
                await self._publish_state(client, active, snapshot.personas)

    async def _commands(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = _text(message.payload)
            if message.topic.matches(self.ha_status_topic):
                if payload == ONLINE:
                    _LOGGER.info("Home Assistant came online; republishing the persona select")
                    await self._publish_all(client)
                continue
            if message.topic.matches(self.command_topic):
                await self._select(client, payload)

    async def _select(self, client: aiomqtt.Client, option: str) -> None:
        personas = self.manager.personas
        persona = find_persona(personas, option)
        if persona is None:
            _LOGGER.warning("MQTT asked for unknown persona %r; known: %s", option, list(personas))
            await self._publish_state(client, self.manager.active(), personas)  # let HA revert
            return
        previous = self.manager.active().id
        persona = await asyncio.to_thread(self.manager.set_active, persona.id)
        if self.metrics is not None and persona.id != previous:
            self.metrics.switches.inc((("source", "mqtt"),))
        await self._publish_state(client, persona, personas)


async def cancel_and_wait(tasks: set[asyncio.Task] | list[asyncio.Task], every: float = 1.0) -> None:
    """Cancel tasks and wait until they are done, cancelling again while they are not.

    aiomqtt waits for acknowledgements with `asyncio.wait_for`, which on Python 3.11 can swallow a
    cancellation that arrives just as the acknowledgement does; a single cancel() can then be lost.
    """
    pending = {task for task in tasks if not task.done()}
    for task in pending:
        task.cancel()
    while pending:
        _, pending = await asyncio.wait(pending, timeout=every)
        for task in pending:
            task.cancel()


def _text(payload: Any) -> str:
    if isinstance(payload, bytes | bytearray):
        return payload.decode("utf-8", errors="replace").strip()
    return "" if payload is None else str(payload).strip()
