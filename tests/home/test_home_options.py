"""Where the persona service finds Home Assistant: flags, $HA_TOKEN, or the add-on's Supervisor token."""

from __future__ import annotations

import argparse

import pytest

from wyoming_persona.home.options import add_home_arguments, home_options


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_home_arguments(parser)
    return parser.parse_args(argv)


def test_no_token_means_no_home_control():
    assert home_options(parse(), environ={}).link is None


def test_flags_win_and_the_websocket_url_follows():
    link = home_options(parse("--ha-url", "https://ha.example:8123/", "--ha-token", "t"), environ={}).link
    assert (link.token, link.websocket_url) == ("t", "wss://ha.example:8123/api/websocket")


def test_the_add_on_uses_the_supervisor_proxy():
    link = home_options(parse(), environ={"SUPERVISOR_TOKEN": "s"}).link
    assert (link.token, link.websocket_url) == ("s", "ws://supervisor/core/websocket")
    assert home_options(parse("--no-home-control"), environ={"SUPERVISOR_TOKEN": "s"}).link is None


def test_device_personas():
    options = home_options(parse("--device-persona", "kids=pirate", "--device-persona", " abc = butler "), {})
    assert options.device_personas == {"kids": "pirate", "abc": "butler"}
    with pytest.raises(SystemExit):
        parse("--device-persona", "pirate")


def test_without_the_home_extra_home_control_is_off_with_a_clear_error(monkeypatch, caplog):
    import sys

    from wyoming_persona.agent.cli import home_control

    monkeypatch.setitem(sys.modules, "hassil", None)  # what an install without [home] looks like
    options = home_options(parse("--ha-token", "t"), environ={})
    assert home_control(options, backend=None) is None
    assert "wyoming-persona[home]" in caplog.text
