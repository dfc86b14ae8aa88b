"""The home link against a server speaking HA's websocket API: load, follow states, refuse, reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from wyoming_persona.home.link import HomeLink, HomeLinkSettings


@contextlib.asynccontextmanager
async def running(link: HomeLink):
    task = asyncio.create_task(link.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def link_to(url: str, token: str = "test-token") -> HomeLink:
    return HomeLink(HomeLinkSettings(url, token, timeout=5, retry_min=0.05, retry_max=0.1))


async def wait_for(condition) -> None:
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 - the link's state, changed by its own task
            await asyncio.sleep(0.01)


async def test_the_exposed_entities_load_with_names_areas_and_aliases(ha_websocket):
    link = link_to(ha_websocket.url)
    async with running(link):
        async with asyncio.timeout(10):
            await link.connected.wait()
    home = link.snapshot
    ids = {entity.entity_id for entity in home.entities}
    assert "input_boolean.kitchen_light_on" not in ids  # HA says: not exposed
    assert "light.attic_light" in ids  # no choice recorded: a light is exposed by HA's default
    assert home.by_name("coffee maker").entity_id == "switch.coffee_machine"
    assert home.by_name("Kitchen Light").area == "Kitchen"
    assert home.by_name("outdoor temperature").unit == "°C"
    assert set(home.areas) == {"Kitchen", "Living Room", "Bedroom", "Garage"}


async def test_states_follow_state_changed_events(ha_websocket):
    link = link_to(ha_websocket.url)
    async with running(link):
        await wait_for(lambda: "state_changed" in ha_websocket.subscriptions)
        await ha_websocket.change_state("cover.garage_door", "open", current_position=100)
        await wait_for(lambda: link.snapshot.by_name("Garage Door").state == "open")
        version = link.snapshot.version
    assert link.snapshot.by_name("Garage Door").attributes["current_position"] == 100
    assert link.snapshot.version == version  # a state change does not rebuild the recogniser's lists


async def test_a_refused_token_is_one_warning_and_no_home(ha_websocket, caplog):
    link = link_to(ha_websocket.url, token="wrong")
    with caplog.at_level(logging.DEBUG, logger="wyoming_persona.home.link"):
        async with running(link):
            await wait_for(lambda: ha_websocket.connections >= 3)
    assert link.snapshot is None and not link.connected.is_set()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "token was refused" in warnings[0].getMessage()


async def test_a_dropped_connection_is_made_again(ha_websocket):
    link = link_to(ha_websocket.url)
    async with running(link):
        await wait_for(lambda: "state_changed" in ha_websocket.subscriptions)
        await ha_websocket.drop_connections()
        await wait_for(lambda: ha_websocket.connections >= 2 and link.connected.is_set())
        await ha_websocket.change_state("light.kitchen_light", "on")
        await wait_for(lambda: link.snapshot.by_name("Kitchen Light").state == "on")


async def test_nothing_listening_is_retried_quietly():
    link = link_to("http://127.0.0.1:9")
    async with running(link):
        await asyncio.sleep(0.3)
    assert link.snapshot is None


@pytest.mark.parametrize(
    ("sent", "cause"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2, 3]", "not a JSON object"),
        ('{"id": 1, "type": "event", "event": ["state_changed"]}', "an event that is not an object"),
    ],
)
async def test_a_message_that_is_not_a_json_object_is_a_warning_and_a_new_connection(
    ha_websocket, caplog, sent, cause
):
    link = link_to(ha_websocket.url)
    with caplog.at_level(logging.DEBUG, logger="wyoming_persona.home.link"):
        async with running(link):
            await wait_for(lambda: "state_changed" in ha_websocket.subscriptions)
            await ha_websocket.send_raw(sent)
            await wait_for(lambda: ha_websocket.connections >= 2 and link.connected.is_set())
            await ha_websocket.change_state("cover.garage_door", "open", current_position=100)
            await wait_for(lambda: link.snapshot.by_name("Garage Door").state == "open")  # live again
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and cause in warnings[0].getMessage(), [r.getMessage() for r in warnings]
    assert not warnings[0].exc_info  # HA's answer, not our bug: no traceback


async def test_any_other_error_is_a_warning_with_its_traceback_and_a_new_connection(ha_websocket, caplog):
    ha_websocket.entries.append("not an entry")  # build_snapshot fails on it (AttributeError)
    link = link_to(ha_websocket.url)
    with caplog.at_level(logging.DEBUG, logger="wyoming_persona.home.link"):
        async with running(link):
            await wait_for(lambda: ha_websocket.connections >= 3)  # it keeps trying
            ha_websocket.entries.pop()
            await wait_for(link.connected.is_set)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once, not once per attempt
    assert "AttributeError" in warnings[0].getMessage() and warnings[0].exc_info is not None
    infos = [i for i, r in enumerate(caplog.records) if "entities exposed" in r.getMessage()]
    assert infos and infos[-1] > caplog.records.index(warnings[0])  # recovery is said too


async def test_a_link_that_stopped_is_not_connected(ha_websocket):
    """Its snapshot is no longer followed, so nothing may answer from it as if it were live."""
    link = link_to(ha_websocket.url)
    async with running(link):
        await wait_for(link.connected.is_set)
    assert not link.connected.is_set()
