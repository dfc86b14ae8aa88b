"""A live view of the home from Home Assistant's websocket API.

HA sends a Wyoming agent only the transcript, so the persona reads the home itself: the entities
exposed to Assist with their names, aliases and areas (to know which devices exist and to speak a
missing one in character) and their states (to answer "is the garage door open"). One connection
stays open: states follow `state_changed` events, and a registry change reloads the names.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

from .model import HomeEntity, HomeSnapshot, kept_attributes

_LOGGER = logging.getLogger(__name__)

DEFAULT_EXPOSED_DOMAINS = frozenset(
    {
        "climate",
        "cover",
        "fan",
        "humidifier",
        "light",
        "lock",
        "media_player",
        "switch",
        "vacuum",
        "water_heater",
    }
)
"""HA exposes new entities of these domains to Assist by default; an entity HA has not yet recorded a
choice for counts as exposed when it is one of them (HA records it the first time Assist looks)."""
DEFAULT_EXPOSED_SENSOR_CLASSES = frozenset({"temperature", "humidity"})
REGISTRY_EVENTS = ("entity_registry_updated", "device_registry_updated", "area_registry_updated")
SUPERVISOR_URL = "http://supervisor/core"


class HomeLinkError(Exception):
    """HA refused the token or answered something unexpected."""


_EXPECTED = (aiohttp.ClientError, TimeoutError, HomeLinkError, ConnectionError)
"""Errors of the network or of HA's answers: logged by their message alone (no traceback)."""


@dataclass(frozen=True)
class HomeLinkSettings:
    url: str
    """HA's base URL (http://homeassistant.local:8123) or the Supervisor's proxy (http://supervisor/core)."""
    token: str
    timeout: float = 10.0
    """Seconds for the connection and for each answer."""
    retry_min: float = 2.0
    retry_max: float = 60.0

    @property
    def websocket_url(self) -> str:
        base = self.url.rstrip("/")
        if base.startswith("http"):
            base = "ws" + base[4:]
        return f"{base}/websocket" if base.endswith("/core") else f"{base}/api/websocket"


class HomeLink:
    """Keeps `snapshot` current while `run()` runs; None until the first load succeeded."""

    def __init__(self, settings: HomeLinkSettings) -> None:
        self.settings = settings
        self.snapshot: HomeSnapshot | None = None
        self.connected = asyncio.Event()
        self._ids = itertools.count(1)
        self._versions = itertools.count(1)

    async def run(self) -> None:
        """Connect, load, follow changes; reconnect with backoff on any error. Runs until cancelled.

        A warning on the first error of a failure episode (and when the error changes kind; with a
        traceback when it is not a network or protocol error: a bug worth reporting), DEBUG while it
        keeps failing, INFO when the home is loaded again.
        """
        delay = self.settings.retry_min
        failing: type[Exception] | None = None  # the kind of error of this failure episode
        try:
            while True:
                try:
                    await self._session()
                except Exception as err:  # the link's boundary: any error means reconnect, none ends it
                    if self.connected.is_set():  # it worked until now: start the backoff again
                        delay, failing = self.settings.retry_min, None
                    expected = isinstance(err, _EXPECTED)
                    new = failing is not type(err)
                    (_LOGGER.warning if new else _LOGGER.debug)(
                        "Home Assistant at %s: %s; home control waits, trying again in %.0f s",
                        self.settings.url,
                        _cause(err),
                        delay,
                        exc_info=new and not expected,
                    )
                    failing = type(err)
                self.connected.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_max)
        finally:
            self.connected.clear()  # the snapshot is no longer followed

    async def _session(self) -> None:
        """One connection, until it breaks (always by an exception)."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.settings.timeout)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.ws_connect(self.settings.websocket_url, heartbeat=30) as ws,
        ):
            await self._authenticate(ws)
            await self._load(ws)
            await self._send(ws, "subscribe_events", event_type="state_changed")
            for event_type in REGISTRY_EVENTS:
                await self._send(ws, "subscribe_events", event_type=event_type)
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                data = _decoded(message)
                if data.get("type") != "event":
                    continue
                event = data.get("event")
                if not isinstance(event, dict):
                    raise HomeLinkError(f"Home Assistant sent an event that is not an object: {event!r:.80}")
                if event.get("event_type") == "state_changed":
                    self._state_changed(event.get("data") or {})
                elif event.get("event_type") in REGISTRY_EVENTS:
                    await self._load(ws)
            raise ConnectionError("Home Assistant closed the connection")

    async def _authenticate(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        hello = await self._receive(ws)
        if hello.get("type") != "auth_required":
            raise HomeLinkError(f"expected auth_required, got {hello.get('type')!r}")
        await ws.send_json({"type": "auth", "access_token": self.settings.token})
        answer = await self._receive(ws)
        if answer.get("type") != "auth_ok":
            raise HomeLinkError(
                f"the access token was refused ({answer.get('message') or answer.get('type')})"
            )

    async def _load(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        states = await self._call(ws, "get_states")
        exposed = (await self._call(ws, "homeassistant/expose_entity/list")).get("exposed_entities", {})
        entries = await self._call(ws, "config/entity_registry/list")
        devices = await self._call(ws, "config/device_registry/list")
        areas = await self._call(ws, "config/area_registry/list")
        self.snapshot = build_snapshot(states, exposed, entries, devices, areas, next(self._versions))
        if not self.connected.is_set():
            _LOGGER.info(
                "Home Assistant at %s: %d entities exposed to Assist in %d areas",
                self.settings.url,
                len(self.snapshot.entities),
                len(self.snapshot.areas),
            )
        self.connected.set()

    def _state_changed(self, data: dict) -> None:
        new = data.get("new_state")
        if self.snapshot is None or not isinstance(new, dict):
            return
        self.snapshot = self.snapshot.with_state(
            str(data.get("entity_id")), str(new.get("state")), new.get("attributes") or {}
        )

    async def _call(self, ws: aiohttp.ClientWebSocketResponse, message_type: str, **fields: Any) -> Any:
        message_id = await self._send(ws, message_type, **fields)
        while True:
            answer = await self._receive(ws)
            if answer.get("id") != message_id or answer.get("type") != "result":
                continue  # an event of an earlier subscription
            if not answer.get("success"):
                error = answer.get("error") or {}
                raise HomeLinkError(f"{message_type}: {error.get('message') or error}")
            return answer.get("result")

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, message_type: str, **fields: Any) -> int:
        message_id = next(self._ids)
        await ws.send_json({"id": message_id, "type": message_type, **fields})
        return message_id

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> dict:
        try:
            async with asyncio.timeout(self.settings.timeout):
                message = await ws.receive()
        except TimeoutError as err:
            raise TimeoutError(f"no answer within {self.settings.timeout:g} s") from err
        if message.type is not aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"Home Assistant closed the connection ({message.type.name})")
        return _decoded(message)


def _decoded(message: aiohttp.WSMessage) -> dict:
    """One text message as the JSON object HA always sends; HomeLinkError for anything else."""
    try:
        data = json.loads(message.data)
    except ValueError as err:
        raise HomeLinkError(f"Home Assistant sent invalid JSON ({err}): {message.data!r:.80}") from err
    if not isinstance(data, dict):
        raise HomeLinkError(f"Home Assistant sent something that is not a JSON object: {message.data!r:.80}")
    return data


def _cause(err: BaseException) -> str:
    """The error as a log line's cause: its message, with its type when the message does not say it."""
    text = str(err)
    if isinstance(err, _EXPECTED) and text:
        return text
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def build_snapshot(
    states: list[dict],
    exposed: dict,
    entries: list[dict],
    devices: list[dict],
    areas: list[dict],
    version: int,
) -> HomeSnapshot:
    """The exposed entities with names, aliases and areas, from HA's answers."""
    area_names = {area["area_id"]: area["name"] for area in areas if area.get("area_id") and area.get("name")}
    device_areas = {device["id"]: device.get("area_id") for device in devices if device.get("id")}
    registry = {entry["entity_id"]: entry for entry in entries if entry.get("entity_id")}
    entities = []
    for state in states:
        entity_id = state.get("entity_id", "")
        attributes = state.get("attributes") or {}
        entry = registry.get(entity_id, {})
        if not _is_exposed(entity_id, attributes, exposed, entry):
            continue
        area_id = entry.get("area_id") or device_areas.get(entry.get("device_id") or "")
        name = (
            attributes.get("friendly_name")
            or entry.get("name")
            or entity_id.split(".", 1)[-1].replace("_", " ")
        )
        entities.append(
            HomeEntity(
                entity_id=entity_id,
                name=str(name),
                state=str(state.get("state")),
                area=area_names.get(area_id or ""),
                aliases=tuple(str(alias) for alias in entry.get("aliases") or () if alias),
                device_class=attributes.get("device_class")
                or entry.get("device_class")
                or entry.get("original_device_class"),
                unit=attributes.get("unit_of_measurement"),
                attributes=kept_attributes(attributes),
            )
        )
    used = {entity.area for entity in entities if entity.area}
    return HomeSnapshot(tuple(entities), tuple(sorted(set(area_names.values()) | used)), version)


def _is_exposed(entity_id: str, attributes: dict, exposed: dict, entry: dict) -> bool:
    if entry.get("disabled_by") or entry.get("hidden_by"):
        return False
    choice = (exposed.get(entity_id) or {}).get("conversation")
    if choice is not None:
        return bool(choice)
    domain = entity_id.split(".", 1)[0]
    if domain == "sensor":
        return attributes.get("device_class") in DEFAULT_EXPOSED_SENSOR_CLASSES
    return domain in DEFAULT_EXPOSED_DOMAINS
