"""`wyoming-persona tts`: Piper text to speech that speaks in each persona's voice."""

from __future__ import annotations

import argparse
import asyncio
import logging
from functools import partial
from pathlib import Path

from ..options import add_persona_arguments, add_server_arguments, metrics_options, persona_manager
from ..personas.loader import PersonaLoadError

_LOGGER = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .handler import DEFAULT_MAX_CHARS, DEFAULT_SAMPLES_PER_CHUNK
    from .speech_cache import DEFAULT_MAX_MIB as DEFAULT_CACHE_MIB

    add_server_arguments(parser, "tts")
    add_persona_arguments(parser)
    group = parser.add_argument_group("voices")
    group.add_argument(
        "--voices-dir",
        type=Path,
        action="append",
        default=[],
        help="folder with Piper voices (.onnx + .onnx.json); repeatable. The joe voice is always there",
    )
    group.add_argument(
        "--max-voices", type=int, default=4, help="Piper models kept loaded (default: %(default)s)"
    )
    group.add_argument(
        "--noise-scale", type=float, default=None, help="Piper generator noise (default: the voice's)"
    )
    group.add_argument(
        "--noise-w-scale", type=float, default=None, help="Piper phoneme width noise (default: the voice's)"
    )
    group.add_argument(
        "--max-chars",
        type=int,
        default=DEFAULT_MAX_CHARS,
        help="longest text spoken per request; longer gets an error (default: %(default)s)",
    )
    group.add_argument(
        "--samples-per-chunk",
        type=int,
        default=DEFAULT_SAMPLES_PER_CHUNK,
        help="samples per audio-chunk event",
    )
    group.add_argument(
        "--no-first-clause",
        action="store_true",
        help="speak the first sentence whole instead of starting with its first clause",
    )
    group.add_argument(
        "--no-preload", action="store_true", help="load voices on first use instead of before 'Ready'"
    )
    group.add_argument(
        "--speech-cache-mib",
        type=float,
        default=DEFAULT_CACHE_MIB,
        help="MiB of synthesized speech kept by voice and text, so a reply the persona service "
        "synthesized ahead is not synthesized again when Home Assistant asks; 0 = off (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    from .engine import NoiseSettings, TtsEngine
    from .handler import ResponseSettings, TtsEventHandler
    from .pool import VoicePool
    from .speech_cache import SpeechCache
    from .voices import VoiceCatalog

    try:
        manager = persona_manager(args)
    except PersonaLoadError as err:
        _LOGGER.error("Cannot load personas from %s:\n%s", args.personas_dir, err)
        return 1
    catalog = VoiceCatalog(args.voices_dir)
    pool = VoicePool(args.max_voices)
    if args.speech_cache_mib < 0:
        _LOGGER.error("--speech-cache-mib must be 0 (off) or more, got %s", args.speech_cache_mib)
        return 2
    cache = SpeechCache(int(args.speech_cache_mib * 2**20)) if args.speech_cache_mib else None
    noise = NoiseSettings(args.noise_scale, args.noise_w_scale)
    engine = TtsEngine(catalog, manager, pool, noise, cache)
    settings = ResponseSettings(
        max_chars=args.max_chars,
        samples_per_chunk=args.samples_per_chunk,
        split_first_clause=not args.no_first_clause,
    )
    _LOGGER.info(
        "TTS: %d personas, voices %s, pool of %d, active persona %s",
        len(manager.personas),
        sorted(catalog.voices()),
        pool.max_voices,
        manager.active().id,
    )
    factory = partial(TtsEventHandler, engine=engine, settings=settings)
    return asyncio.run(_serve(args, engine, factory, preload=not args.no_preload))


async def _serve(args: argparse.Namespace, engine, factory, preload: bool) -> int:
    from ..wyoming_server import serve

    if preload:
        await preload_voices(engine)
    try:
        async with engine.manager.watching():
            await serve(args.uri, factory, args.zeroconf, metrics_options(args))
    finally:
        engine.pool.close()
    return 0


async def preload_voices(engine) -> None:
    """Load the active persona's voice first, then other personas' voices while the pool has room."""
    from .engine import VoiceRequestError

    personas = [engine.manager.active(), *engine.manager.personas.values()]
    wanted = []
    for persona in personas:
        try:
            voice = engine.resolve(persona.id).voice
        except VoiceRequestError as err:
            _LOGGER.warning("%s", err.text)
            continue
        if voice not in wanted:
            wanted.append(voice)
    for voice in wanted[: engine.pool.max_voices]:
        await engine.pool.get(voice)
