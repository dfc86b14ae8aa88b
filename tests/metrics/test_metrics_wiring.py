"""How metrics ports travel: the services table -> `make run` flags -> the API's scrape targets."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from wyoming_persona.api import cli as api_cli
from wyoming_persona.api.settings import ScrapeTarget, SettingsError, default_scrape_targets, parse_scrape
from wyoming_persona.options import add_server_arguments, metrics_options
from wyoming_persona.services import SERVICES, wyoming_services
from wyoming_persona.suite import plan


def test_every_wyoming_service_has_its_own_metrics_port() -> None:
    ports = [s.port for s in SERVICES] + [s.metrics_port for s in wyoming_services()]
    assert len(set(ports)) == len(ports)
    assert all(s.metrics_port == s.port + 1000 for s in wyoming_services())


def test_make_run_serves_and_scrapes_the_metrics_ports() -> None:
    planned = {p.name: p for p in plan(Path("p"), Path("s"))}
    api = planned["api"].args
    for service in wyoming_services():
        args = planned[service.name].args
        assert args[args.index("--metrics-port") + 1] == str(service.metrics_port)
        assert args[args.index("--metrics-host") + 1] == "127.0.0.1"
        assert f"{service.name}=http://127.0.0.1:{service.metrics_port}/metrics" in api


def test_a_service_moved_to_another_port_has_no_metrics_port() -> None:
    planned = {p.name: p for p in plan(Path("p"), Path("s"), ports={"vad": 20001})}
    assert "--metrics-port" not in planned["vad"].args
    assert not any(arg.startswith("vad=http") for arg in planned["api"].args)
    assert "--metrics-port" in planned["tts"].args


def test_metrics_stay_on_loopback_unless_asked() -> None:
    """They once followed the --uri host: the add-ons' tcp://0.0.0.0 opened them to every interface."""
    parser = argparse.ArgumentParser()
    add_server_arguments(parser, "tts")
    options = metrics_options(parser.parse_args(["--uri", "tcp://0.0.0.0:10200", "--metrics-port", "11200"]))
    assert (options.service, options.host, options.port) == ("tts", "127.0.0.1", 11200)
    asked = metrics_options(parser.parse_args(["--metrics-host", "0.0.0.0", "--metrics-port", "11200"]))
    assert (asked.host, asked.port) == ("0.0.0.0", 11200)
    off = metrics_options(parser.parse_args(["--uri", "unix:///tmp/tts.sock"]))
    assert (off.host, off.port) == ("127.0.0.1", 0)


def test_parse_scrape() -> None:
    assert parse_scrape("tts=http://h:11200/metrics") == ScrapeTarget("tts", "http://h:11200/metrics")
    for bad in ("tts", "=http://h:1/metrics", "tts=tcp://h:1", "tts=http://h/metrics", "tts=http://h:x/"):
        with pytest.raises(SettingsError, match="--scrape"):
            parse_scrape(bad)


def _api_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    api_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_api_scrapes_the_table_by_default_and_only_what_it_is_told_otherwise() -> None:
    settings, _ = api_cli.settings_from_args(_api_args())
    assert settings.scrape == default_scrape_targets()
    assert {t.name for t in settings.scrape} == {s.name for s in wyoming_services()}
    settings, _ = api_cli.settings_from_args(_api_args("--service", "asr=tcp://h:10300"))
    assert settings.scrape == ()
    settings, _ = api_cli.settings_from_args(
        _api_args("--service", "asr=tcp://h:10300", "--scrape", "asr=http://h:11300/metrics")
    )
    assert settings.scrape == (ScrapeTarget("asr", "http://h:11300/metrics"),)
    with pytest.raises(SettingsError, match="unique"):
        api_cli.settings_from_args(_api_args("--scrape", "a=http://h:1/m", "--scrape", "a=http://h:2/m"))
