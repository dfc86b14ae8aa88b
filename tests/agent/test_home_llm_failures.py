"""The home LLM failing (an HTTP error, no answer in time): one warning per failure episode with its
cause, DEBUG while it keeps failing, INFO when it answers again; the utterance then goes to chat."""

from __future__ import annotations

import logging

import pytest
from home.ha_websocket import AREAS, harness_home

from wyoming_persona.agent.backends import OllamaSettings
from wyoming_persona.agent.backends.ollama import OllamaChatBackend
from wyoming_persona.home.link import build_snapshot
from wyoming_persona.home.model_intents import ModelIntents

ASKED = "Can I get some light in the kitchen?"
LOGGER = "wyoming_persona.home.model_intents"


@pytest.fixture
async def backend(fake_ollama):
    backend = OllamaChatBackend(OllamaSettings(host=fake_ollama.url))
    yield backend
    await backend.close()


def said(caplog) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


async def test_a_failing_home_llm_is_one_warning_then_debug_then_info_when_it_answers(
    fake_ollama, backend, caplog
):
    home = build_snapshot(*_harness(), version=1)
    model = ModelIntents(backend, timeout=0.5)
    assert model.worth_asking(ASKED, home)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        fake_ollama.mode = "error"
        assert await model.recognize(ASKED, home) is None
        assert await model.recognize(ASKED, home) is None
        fake_ollama.mode, fake_ollama.reply = "ok", ["chat"]
        assert await model.recognize(ASKED, home) is None  # it answered (in words: chat)
        fake_ollama.mode = "hang"  # a new episode: no answer in time
        assert await model.recognize(ASKED, home) is None
    lines = [(level, message) for level, message in said(caplog) if "Home commands" in message]
    assert [level for level, _ in lines] == [logging.WARNING, logging.DEBUG, logging.INFO, logging.WARNING]
    assert "404" in lines[0][1] and "model 'nope' not found" in lines[0][1], lines[0]
    assert "timed out" in lines[3][1], lines[3]


def _harness():
    states, entries, exposed = harness_home()
    return states, exposed, entries, [], AREAS
