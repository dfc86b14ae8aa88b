"""`wyoming-persona api`: the HTTP control API, and optionally the MQTT persona select beside it."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys

from ..options import add_persona_arguments, persona_manager
from ..personas import PersonaLoadError
from ..pins import PinnedError, add_pinned_arguments, parse_pinned
from ..services import PORTS
from .settings import (
    DEFAULT_HEALTH_TIMEOUT,
    DEFAULT_STUDIO_TIMEOUT,
    SUPERVISOR_IP,
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
    studio = parser.add_argument_group("persona studio (the page at /, and Home Assistant's ingress)")
    studio.add_argument(
        "--ingress-port",
        type=int,
        default=0,
        help="also serve the API and the studio to Home Assistant's ingress on this port, answering only "
        "--ingress-peer (the add-on: 8099); 0 = off (default)",
    )
    studio.add_argument(
        "--ingress-host", default="0.0.0.0", help="address of the ingress port (default: %(default)s)"
    )
    studio.add_argument(
        "--ingress-peer",
        default=SUPERVISOR_IP,
        help="the only peer the ingress port answers: the Supervisor's proxy (default: %(default)s)",
    )
    studio.add_argument(
        "--studio-tts",
        default=None,
        metavar="URI",
        help="the TTS service the studio previews voices with (default: the --service named tts)",
    )
    studio.add_argument(
        "--studio-persona",
        default=None,
        metavar="URI",
        help="the persona service the studio's chat talks to (default: the --service named persona)",
    )
    studio.add_argument(
        "--studio-timeout",
        type=float,
        default=DEFAULT_STUDIO_TIMEOUT,
        help="seconds the studio waits for any one answer of those services (default: %(default)s)",
    )
    add_pinned_arguments(
        parser,
        "a pinned agent of the persona service (its --pinned-persona values), shown in the studio; a bare "
        "port is on the persona service's host (repeatable)",
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
    if args.studio_timeout <= 0:
        raise SettingsError("--studio-timeout must be greater than 0")
    if not 0 <= args.ingress_port < 65536:
        raise SettingsError(f"--ingress-port {args.ingress_port} is out of range")
    settings = ApiSettings(
        host=args.host,
        port=args.port,
        token=args.token,
        services=services,
        health_timeout=args.health_timeout,
        scrape=scrape,
        ingress_port=args.ingress_port,
        ingress_host=args.ingress_host,
        ingress_peer=args.ingress_peer,
        studio_tts=args.studio_tts,
        studio_persona=args.studio_persona,
        studio_timeout=args.studio_timeout,
    )
    persona_uri = settings.service_uri("persona") or f"tcp://127.0.0.1:{PORTS['persona']}"
    try:
        settings = dataclasses.replace(settings, pinned=parse_pinned(args.pinned_persona, persona_uri))
    except PinnedError as err:
        raise SettingsError(str(err)) from None
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

    from .app import METRICS, STUDIO, make_app
    from .mqtt import PersonaSelect, cancel_and_wait

    app = make_app(manager, settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    ingress = None
    if settings.ingress_port:
        ingress_app = make_app(manager, settings, app[METRICS], ingress=True, studio=app[STUDIO])
        ingress = web.AppRunner(ingress_app, access_log=None)
        await ingress.setup()
        await web.TCPSite(ingress, settings.ingress_host, settings.ingress_port).start()
        _LOGGER.info(
            "Studio for Home Assistant's ingress on http://%s:%d (only %s is answered)",
            settings.ingress_host,
            settings.ingress_port,
            settings.ingress_peer,
        )
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
    _LOGGER.info("Persona studio at http://%s:%d/", settings.host, settings.port)
    _LOGGER.info("Ready")
    try:
        await stop.wait()
        _LOGGER.info("Stopping")
    finally:
        if bridge_task is not None:
            await cancel_and_wait([bridge_task])
        if ingress is not None:
            await ingress.cleanup()
        await runner.cleanup()


def _bridge_ended(task: asyncio.Task) -> None:
    """The bridge restarts itself after any error and only ends when cancelled; say so if it ever does."""
    if task.cancelled():
        return
    error = task.exception()
    _LOGGER.error("MQTT persona select stopped; the API keeps running without it", exc_info=error)
