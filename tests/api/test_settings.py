"""Parsing of the API's flags into frozen settings."""

from __future__ import annotations

import pytest

from wyoming_persona.api.settings import (
    ServiceTarget,
    SettingsError,
    default_services,
    parse_mqtt_url,
    parse_service,
)
from wyoming_persona.services import PORTS


def test_parse_service() -> None:
    assert parse_service("asr=tcp://10.0.0.2:10300") == ServiceTarget("asr", "tcp://10.0.0.2:10300")
    assert parse_service(" tts = unix:///run/tts.sock ") == ServiceTarget("tts", "unix:///run/tts.sock")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("asr", "NAME=tcp"),
        ("=tcp://h:1", "NAME=tcp"),
        ("asr=tcp://host", "host and a port"),
        ("asr=tcp://host:notaport", "host and a port"),
        ("asr=http://host:1", "only tcp"),
    ],
)
def test_parse_service_errors(text: str, fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        parse_service(text)


def test_default_services_follow_ports() -> None:
    services = {s.name: s.uri for s in default_services()}
    assert services == {name: f"tcp://127.0.0.1:{PORTS[name]}" for name in ("vad", "asr", "persona", "tts")}


def test_parse_mqtt_url() -> None:
    assert parse_mqtt_url("mqtt://broker") == ("broker", 1883, None, None)
    assert parse_mqtt_url("mqtt://u%40x:p%3Aw@10.0.0.5:1884") == ("10.0.0.5", 1884, "u@x", "p:w")


@pytest.mark.parametrize("url", ["http://broker", "mqtt://", "mqtt://broker:99999"])
def test_parse_mqtt_url_errors(url: str) -> None:
    with pytest.raises(SettingsError):
        parse_mqtt_url(url)
