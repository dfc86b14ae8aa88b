"""An in-test server that speaks Home Assistant's websocket API (auth, commands, state_changed events)
for the calls the home link makes, with the HA harness's home. The real HA is checked with
../shared/ha-harness; the project's tests must run without it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

TOKEN = "test-token"

AREAS = [
    {"area_id": "kitchen", "name": "Kitchen", "aliases": []},
    {"area_id": "living_room", "name": "Living Room", "aliases": []},
    {"area_id": "bedroom", "name": "Bedroom", "aliases": []},
    {"area_id": "garage", "name": "Garage", "aliases": []},
]


def _state(entity_id: str, state: str, name: str, **attributes) -> dict:
    return {"entity_id": entity_id, "state": state, "attributes": {"friendly_name": name, **attributes}}


def harness_home() -> tuple[list[dict], list[dict], dict]:
    """States, entity registry entries and exposure of the HA harness's home."""
    states = [
        _state("light.kitchen_light", "off", "Kitchen Light"),
        _state("light.living_room_lamp", "on", "Living Room Lamp", brightness=128),
        _state("light.bedroom_light", "off", "Bedroom Light"),
        _state("switch.coffee_machine", "off", "Coffee Machine"),
        _state("cover.garage_door", "closed", "Garage Door", device_class="garage", current_position=0),
        _state("climate.thermostat", "heat", "Thermostat", temperature=21.0, current_temperature=19.5),
        _state(
            "sensor.living_room_temperature",
            "19.5",
            "Living Room Temperature",
            device_class="temperature",
            unit_of_measurement="°C",
        ),
        _state(
            "sensor.outdoor_temperature",
            "12.5",
            "Outdoor Temperature",
            device_class="temperature",
            unit_of_measurement="°C",
        ),
        _state("input_boolean.kitchen_light_on", "off", "kitchen light on"),  # a helper, not exposed
        _state("light.attic_light", "off", "Attic Light"),  # in no area; exposed by HA's default rule
    ]
    areas = {
        "light.kitchen_light": "kitchen",
        "light.living_room_lamp": "living_room",
        "light.bedroom_light": "bedroom",
        "switch.coffee_machine": "kitchen",
        "cover.garage_door": "garage",
        "climate.thermostat": "living_room",
        "sensor.living_room_temperature": "living_room",
    }
    entries = [
        {
            "entity_id": state["entity_id"],
            "area_id": areas.get(state["entity_id"]),
            "device_id": None,
            "aliases": ["Coffee Maker"] if state["entity_id"] == "switch.coffee_machine" else [],
        }
        for state in states
    ]
    exposed = {entry["entity_id"]: {"conversation": True} for entry in entries if entry["entity_id"] in areas}
    exposed["sensor.outdoor_temperature"] = {"conversation": True}
    exposed["input_boolean.kitchen_light_on"] = {"conversation": False}
    return states, entries, exposed


@dataclass
class HaWebsocket:
    states: list[dict]
    entries: list[dict]
    exposed: dict
    token: str = TOKEN
    connections: int = 0
    commands: list[str] = field(default_factory=list)
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    subscriptions: dict[str, int] = field(default_factory=dict)
    url: str = ""

    @classmethod
    def with_harness_home(cls) -> HaWebsocket:
        return cls(*harness_home())

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/websocket", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        self.sockets.append(ws)
        await ws.send_json({"type": "auth_required", "ha_version": "2026.2.3"})
        auth = await ws.receive_json()
        if auth.get("access_token") != self.token:
            await ws.send_json({"type": "auth_invalid", "message": "Invalid access token or password"})
            await ws.close()
            return ws
        await ws.send_json({"type": "auth_ok", "ha_version": "2026.2.3"})
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                break
            command = message.json()
            self.commands.append(command["type"])
            await ws.send_json(
                {"id": command["id"], "type": "result", "success": True, "result": self.result(command)}
            )
        return ws

    def result(self, command: dict):
        match command["type"]:
            case "get_states":
                return self.states
            case "homeassistant/expose_entity/list":
                return {"exposed_entities": self.exposed}
            case "config/entity_registry/list":
                return self.entries
            case "config/device_registry/list":
                return []
            case "config/area_registry/list":
                return AREAS
            case "subscribe_events":
                self.subscriptions[command["event_type"]] = command["id"]
                return None
        raise AssertionError(f"unexpected command {command['type']}")

    async def change_state(self, entity_id: str, state: str, **attributes) -> None:
        """What HA sends subscribers of state_changed."""
        for item in self.states:
            if item["entity_id"] == entity_id:
                item["state"] = state
                item["attributes"].update(attributes)
                new_state = item
        event = {
            "id": self.subscriptions["state_changed"],
            "type": "event",
            "event": {
                "event_type": "state_changed",
                "data": {"entity_id": entity_id, "new_state": new_state},
            },
        }
        for ws in self.sockets:
            if not ws.closed:
                await ws.send_json(event)

    async def send_raw(self, text: str) -> None:
        """Any text to every open connection: what a broken proxy (or a bug in HA) could send."""
        for ws in self.sockets:
            if not ws.closed:
                await ws.send_str(text)

    async def drop_connections(self) -> None:
        for ws in self.sockets:
            await ws.close()
        await asyncio.sleep(0)
