"""`wyoming-persona api`: the HTTP control API, and optionally the MQTT persona select beside it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from ..options import add_persona_arguments, persona_manager
from ..personas import PersonaLoadError
from ..services import PORTS
from .settings import (
    DEFAULT_HEALTH_TIMEOUT,
    ApiSettings,
    MqttSettings,
    SettingsError,
    default_scrape_targets,
    default_services,
    parse_mqtt_url,
    parse_scrape,
    parse_service,
)

_LOGGER = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_persona_arguments(parser)
    http = parser.add_argument_group("http")
    http.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    http.add_argument("--port", type=int, default=PORTS["api"], help="port to bind (default: %(default)s)")
    http.add_argument(
        "--token",
        default=os.environ.get("WYOMING_PERSONA_API_TOKEN") or None,
        help="bearer token required on every request (env WYOMING_PERSONA_API_TOKEN); "
        "mandatory when --host is not a loopback address",
    )
    http.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="NAME=URI",
        help="a Wyoming service for /api/health, e.g. asr=tcp://127.0.0.1:10300 (repeatable; "
        "default: vad, asr, persona and tts on 127.0.0.1 at their default ports)",
    )
    http.add_argument(
        "--scrape",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="a service's Prometheus endpoint merged into /metrics, e.g. "
        "tts=http://127.0.0.1:11200/metrics (repeatable; default: without --service, every service of "
        "the table on 127.0.0.1 at its metrics port; with --service, none)",
    )
    http.add_argument(
        "--health-timeout",
        type=float,
        default=DEFAULT_HEALTH_TIMEOUT,
        help="seconds a service has to answer describe (default: %(default)s)",
    )
    mqtt = parser.add_argument_group("mqtt")
    mqtt.add_argument(
        "--mqtt",
        default=os.environ.get("WYOMING_PERSONA_MQTT") or None,
        metavar="URL",
        help="publish the persona as an HA select entity: mqtt://[user:password@]host[:port] "
        "(env WYOMING_PERSONA_MQTT)",
    )
    mqtt.add_argument(
        "--mqtt-username",
        default=os.environ.get("WYOMING_PERSONA_MQTT_USERNAME") or None,
        help="overrides the URL's user (env WYOMING_PERSONA_MQTT_USERNAME)",
    )
    mqtt.add_argument(
        "--mqtt-password",
        default=os.environ.get("WYOMING_PERSONA_MQTT_PASSWORD") or None,
        help="overrides the URL's password (env WYOMING_PERSONA_MQTT_PASSWORD)",
    )
    mqtt.add_argument(
        "--mqtt-node-id", default="wyoming_persona", help="MQTT discovery node id (default: %(default)s)"
    )
    mqtt.add_argument(
        "--mqtt-discovery-prefix",
        default="homeassistant",
        help="HA MQTT discovery prefix (default: %(default)s)",
    )


def settings_from_args(args: argparse.Namespace) -> tuple[ApiSettings, MqttSettings | None]:
    services = tuple(parse_service(s) for s in args.service) if args.service else default_services()
    names = [s.name for s in services]
    if len(set(names)) != len(names):
        raise SettingsError(f"--service names must be unique, got {names}")
    if args.scrape:
        scrape = tuple(parse_scrape(s) for s in args.scrape)
    else:
        scrape = () if args.service else default_scrape_targets()
    scrape_names = [s.name for s in scrape]
    if len(set(scrape_names)) != len(scrape_names):
        raise SettingsError(f"--scrape names must be unique, got {scrape_names}")
    if args.health_timeout <= 0:
        raise SettingsError("--health-timeout must be greater than 0")
    settings = ApiSettings(
        host=args.host,
        port=args.port,
        token=args.token,
        services=services,
        health_timeout=args.health_timeout,
        scrape=scrape,
    )
    settings.check()
    mqtt = None
    if args.mqtt:
        host, port, username, password = parse_mqtt_url(args.mqtt)
        mqtt = MqttSettings(
            host=host,
            port=port,
            username=args.mqtt_username or username,
            password=args.mqtt_password or password,
            node_id=args.mqtt_node_id,
            discovery_prefix=args.mqtt_discovery_prefix.rstrip("/"),
        )
    return settings, mqtt


def run(args: argparse.Namespace) -> int:
    try:
        settings, mqtt = settings_from_args(args)
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        manager = persona_manager(args)
    except PersonaLoadError as err:
        for error in err.errors:
            print(error, file=sys.stderr)
        return 1
    asyncio.run(serve(manager, settings, mqtt))
    return 0


async def serve(manager, settings: ApiSettings, mqtt: MqttSettings | None) -> None:
    """Serve HTTP (and MQTT) until SIGTERM or SIGINT."""
    from aiohttp import web

    from .app import METRICS, make_app
    from .mqtt import PersonaSelect, cancel_and_wait

    app = make_app(manager, settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    bridge_task = None
    if mqtt is not None:
        bridge = PersonaSelect(manager, mqtt, app[METRICS])
        bridge_task = asyncio.create_task(bridge.run(), name="mqtt-bridge")
        bridge_task.add_done_callback(_bridge_ended)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _LOGGER.info(
        "API on http://%s:%d (token %s, %d services for health, MQTT %s)",
        settings.host,
        settings.port,
        "required" if settings.token else "off",
        len(settings.services),
        f"{mqtt.host}:{mqtt.port}" if mqtt else "off",
    )
    _LOGGER.info("Ready")
    try:
        await stop.wait()
        _LOGGER.info("Stopping")
    finally:
        if bridge_task is not None:
            await cancel_and_wait([bridge_task])
        await runner.cleanup()


def _bridge_ended(task: asyncio.Task) -> None:
    """The bridge restarts itself after any error and only ends when cancelled; say so if it ever does."""
    if task.cancelled():
        return
    error = task.exception()
    _LOGGER.error("MQTT persona select stopped; the API keeps running without it", exc_info=error)
