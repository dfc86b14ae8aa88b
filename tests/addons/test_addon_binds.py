"""Where each add-on's services listen: nothing is mapped to the host unless the user maps it, and the
run scripts open to the add-on network exactly what Home Assistant and the persona add-on's control API
reach there (Wyoming ports, the Ollama-compatible API, the other add-ons' metrics)."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from wyoming_persona.agent import cli as agent_cli
from wyoming_persona.agent.ollama_api import check_exposure
from wyoming_persona.cli import build_parser
from wyoming_persona.options import metrics_options
from wyoming_persona.services import SERVICES

from .test_addons import ADDONS_DIR, EXPECTED, S6

WYOMING = [s for s in SERVICES if s.addon and s.wyoming]


def _exec_args(slug: str, service: str) -> list[str]:
    """The literal flags of the run script's `exec wyoming-persona <service> ...` (those whose value
    the script reads from the options, like `--model "$(bashio::config 'model')"`, left out)."""
    text = (ADDONS_DIR / slug / S6 / service / "run").read_text()
    command = text[text.index(f"exec wyoming-persona {service}") :].replace("\\\n", " ")
    words = shlex.split(command.splitlines()[0])[3:]
    args: list[str] = []
    for i, word in enumerate(words):
        if not word.startswith("--"):
            continue
        value = words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("--") else None
        if value is None:
            args.append(word)
        elif "$" not in value:
            args += [word, value]
    return args


def _flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


@pytest.mark.parametrize("slug", sorted(EXPECTED))
def test_no_port_is_mapped_to_the_host_unless_the_user_maps_it(slug: str) -> None:
    ports = yaml.safe_load((ADDONS_DIR / slug / "config.yaml").read_text())["ports"]
    assert ports and all(host_port is None for host_port in ports.values()), ports


@pytest.mark.parametrize("service", WYOMING, ids=[s.name for s in WYOMING])
def test_each_service_listens_where_its_clients_are(service) -> None:
    args = _exec_args(service.addon, service.name)
    parsed = build_parser(service.name).parse_args([service.name, *args])
    assert parsed.uri == f"tcp://0.0.0.0:{service.port}", "HA reaches it over the add-on network"
    metrics = metrics_options(parsed)
    assert metrics.port == service.metrics_port
    if service.addon == "persona":  # scraped by the control API in the same container
        scrape = (ADDONS_DIR / "persona" / S6 / "api/run").read_text()
        assert f"{service.name}=http://127.0.0.1:{service.metrics_port}/metrics" in scrape
        assert metrics.host == "127.0.0.1"
    else:  # scraped by the persona add-on's control API over the add-on network
        assert metrics.host == "0.0.0.0"


def test_the_persona_add_on_opens_the_ollama_api_to_the_add_on_network_only() -> None:
    args = _exec_args("persona", "persona")
    parsed = build_parser("persona").parse_args(["persona", *args])
    settings = agent_cli.settings_from_args(parsed)
    assert (settings.ollama_api_host, settings.ollama_api_port) == ("0.0.0.0", 10501)
    assert settings.ollama_api_unauthenticated and "--ollama-api-token" not in args
    check_exposure(settings.ollama_api_host, settings.ollama_api_token, settings.ollama_api_unauthenticated)
    text = (ADDONS_DIR / "persona" / S6 / "persona/run").read_text()
    assert re.search(r"bashio::addon\.port 10501\b", text), "warn when the user maps the port"
