"""Home control when something fails: while HA cannot be reached no old state is spoken, and a
background task that fails is an ERROR with its traceback (and the link runs again)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from pathlib import Path

import pytest

from wyoming_persona.home.control import HomeControl, HomeIntent, HomeReply
from wyoming_persona.home.lines import Fact, Outcome
from wyoming_persona.home.link import HomeLink, HomeLinkSettings
from wyoming_persona.home.recognizer import IntentRecognizer
from wyoming_persona.personas import PersonaManager
from wyoming_persona.personas.model import HomeLines

SHIPPED_PERSONAS = Path(__file__).resolve().parents[2] / "config" / "personas"
QUESTION = "is the garage door open"
PIRATE_AWAY = "Arr, the house be not answerin' me signals, matey. I can't spy the garage door right now."


@pytest.fixture(scope="module")
def recognizer() -> IntentRecognizer:
    return IntentRecognizer()


@pytest.fixture
def personas(tmp_path):
    return PersonaManager(SHIPPED_PERSONAS, tmp_path / "state")


def fast(url: str) -> HomeLinkSettings:
    return HomeLinkSettings(url, "test-token", timeout=5, retry_min=0.05, retry_max=0.1)


async def never_phrased(persona, fact):
    raise AssertionError(f"the LLM was asked to phrase {fact}")


async def wait_for(condition) -> None:
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 - state changed by the background tasks
            await asyncio.sleep(0.01)


async def test_while_ha_cannot_be_reached_a_question_says_so_instead_of_the_old_state(
    ha_websocket, personas, recognizer
):
    control = HomeControl(HomeLink(fast(ha_websocket.url)), recognizer)
    pirate = personas.get("pirate")
    async with control.running():
        await wait_for(control.link.connected.is_set)
        live = await control.answer(QUESTION, pirate, never_phrased)
        assert live.intent is None and "garage door be closed" in live.text

        ha_websocket.token = "wrong"  # HA refuses the link from now on
        await ha_websocket.drop_connections()
        await wait_for(lambda: ha_websocket.connections >= 2 and not control.link.connected.is_set())
        garage = next(s for s in ha_websocket.states if s["entity_id"] == "cover.garage_door")
        garage["state"] = "open"  # opened while the link is down: the snapshot still says closed
        assert control.link.snapshot.by_name("Garage Door").state == "closed"
        away = await control.answer(QUESTION, pirate, never_phrased)
        assert away == HomeReply(PIRATE_AWAY)
        which = await control.answer("which lights are on", pirate, never_phrased)
        assert which.intent is None and "lamp" not in which.text and "house be not answerin'" in which.text
        # A command still goes to HA by the names last known: HA asked, so HA is there to run it.
        command = await control.answer("turn on the kitchen light", pirate, never_phrased)
        assert command.intent == HomeIntent("HassTurnOn", {"name": "Kitchen Light"})

        ha_websocket.token = "test-token"
        await wait_for(control.link.connected.is_set)
        back = await control.answer(QUESTION, pirate, never_phrased)
    assert back.intent is None and "garage door be open" in back.text


async def test_a_persona_without_its_own_line_says_the_plain_one_and_no_llm_guesses(
    home, personas, recognizer
):
    control = HomeControl(HomeLink(fast("http://127.0.0.1:9")), recognizer)
    control.link.snapshot = home  # a snapshot from an earlier connection; the link is not connected
    plain = personas.get("pirate")
    bare = dataclasses.replace(plain, spec=dataclasses.replace(plain.spec, home=HomeLines()))
    reply = await control.answer(QUESTION, bare, never_phrased)
    assert reply == HomeReply("I can't reach Home Assistant right now, so I can't check the garage door.")


def test_every_shipped_persona_says_in_its_words_that_the_home_cannot_be_reached(personas):
    fact = Fact(Outcome.UNREACHABLE, "garage door")
    shipped = personas.personas.values()
    lines = {persona.id: fact.persona_line(persona, random.Random(0)) for persona in shipped}
    assert all(line and "garage door" in line for line in lines.values()), lines
    assert len(set(lines.values())) == len(lines)


class FailingLink(HomeLink):
    """A link whose first runs raise: run() itself catches every error, so only a bug could do this."""

    def __init__(self, settings: HomeLinkSettings, failures: int) -> None:
        super().__init__(settings)
        self.failures = failures
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            raise RuntimeError("a bug in the link")
        await super().run()


async def test_a_link_that_fails_is_an_error_with_its_traceback_once_and_runs_again(
    ha_websocket, recognizer, caplog
):
    link = FailingLink(fast(ha_websocket.url), failures=3)
    with caplog.at_level(logging.DEBUG, logger="wyoming_persona.home.control"):
        async with HomeControl(link, recognizer).running():
            await wait_for(link.connected.is_set)
    records = [r for r in caplog.records if "link to Home Assistant failed" in r.getMessage()]
    assert [r.levelno for r in records] == [logging.ERROR, logging.DEBUG, logging.DEBUG]
    assert records[0].exc_info is not None and str(records[0].exc_info[1]) == "a bug in the link"
    assert link.runs == 4


def errors(caplog) -> list[logging.LogRecord]:
    mine = [r for r in caplog.records if r.name == "wyoming_persona.home.control"]
    return [r for r in mine if r.levelno >= logging.ERROR]


async def test_a_failed_warm_up_is_an_error_with_its_traceback(ha_websocket, recognizer, caplog, monkeypatch):
    def broken(home):
        raise ValueError("the templates did not compile")

    monkeypatch.setattr(recognizer, "warm", broken)
    control = HomeControl(HomeLink(fast(ha_websocket.url)), recognizer)
    with caplog.at_level(logging.ERROR, logger="wyoming_persona.home.control"):
        async with control.running():
            await wait_for(lambda: errors(caplog))
            assert control.link.connected.is_set()  # the link runs on
    [error] = errors(caplog)
    assert "warm-up failed" in error.getMessage() and error.exc_info[0] is ValueError
