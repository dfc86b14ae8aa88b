"""`wyoming-persona asr`: the faster-whisper Wyoming server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from functools import partial
from pathlib import Path

from ..options import add_server_arguments, metrics_options
from ..pypi_fetch import DEFAULT_INDEX, Index
from ..wyoming_server import FrameLimits, serve
from .models import DEFAULT_CACHE_DIR, DEFAULT_MODEL, KNOWN_MODELS

_LOGGER = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_arguments(parser, "asr")
    group = parser.add_argument_group("speech to text")
    group.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"{' or '.join(KNOWN_MODELS)} (from the PyPI model packages) or a faster-whisper model "
        "directory (default: %(default)s)",
    )
    group.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help="where the split 'base' model is reassembled once, and where --download-models puts a "
        "model (default: %(default)s)",
    )
    group.add_argument(
        "--download-models",
        nargs="?",
        const=DEFAULT_INDEX,
        default=None,
        metavar="INDEX_URL",
        help="download tiny.en or base into the cache dir when its packages are not installed, checked "
        f"against pinned sha256 (the add-on; default index {DEFAULT_INDEX}, PEP 691 JSON)",
    )
    group.add_argument("--language", default="en", help="language when the client names none (default: en)")
    group.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    group.add_argument("--compute-type", default="int8", help="CTranslate2 compute type (default: int8)")
    group.add_argument(
        "--threads", type=int, default=min(4, os.cpu_count() or 1), help="CPU threads for Whisper"
    )
    group.add_argument("--beam-size", type=int, default=5, help="decoder beam size (default: %(default)s)")
    group.add_argument(
        "--min-window",
        type=float,
        default=10.0,
        help="shortest encoder window in seconds for short speech; 0 = always Whisper's 30 s "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--max-seconds", type=float, default=30.0, help="longest utterance accepted (default: %(default)s)"
    )
    group.add_argument(
        "--max-payload-bytes",
        type=int,
        default=FrameLimits().max_payload_bytes,
        help="largest audio payload accepted in one frame (default: %(default)s)",
    )
    vad = parser.add_argument_group("voice activity detection (trimming and early decode)")
    vad.add_argument("--vad-threshold", type=float, default=0.5, help="speech probability threshold")
    vad.add_argument(
        "--min-speech-ms", type=int, default=100, help="speech shorter than this is ignored (ms)"
    )
    vad.add_argument(
        "--early-silence-ms",
        type=int,
        default=200,
        help="silence after speech that starts a speculative decode (ms, default: %(default)s)",
    )
    vad.add_argument(
        "--decode-ahead-ms",
        type=int,
        default=64,
        help="silence after speech at which the early decode starts, before --early-silence-ms confirms "
        "the end (a VAD frame is 32 ms); speech that goes on drops it; 0 = at the confirmed end "
        "(default: %(default)s)",
    )
    vad.add_argument("--pad-ms", type=int, default=300, help="audio kept around the speech (ms)")
    vad.add_argument(
        "--endpointing-ms",
        type=int,
        help="end utterances ourselves after this much silence and advertise requires_external_vad=False "
        "(default: off, the client sends audio-stop)",
    )
    vad.add_argument(
        "--no-speech-seconds",
        type=float,
        default=8.0,
        help="with --endpointing-ms: empty transcript if no speech starts within this time",
    )
    vad.add_argument(
        "--smart-turn",
        action="store_true",
        help="with --endpointing-ms: end a turn as soon as the speech stops if the Smart Turn v3 model "
        "(from the pipecat-ai package) judges it complete, instead of waiting for the silence",
    )
    vad.add_argument(
        "--speculation-uri",
        metavar="URI",
        help="tell the persona service at URI (tcp://HOST:PORT, its Wyoming port) each early transcript, "
        "so its reply starts while the client still waits for silence (default: off)",
    )
    vad.add_argument(
        "--partial-every-ms",
        type=int,
        default=700,
        help="with --speculation-uri: while the user speaks, decode the words so far this often and send "
        "them, so the persona service reads the question as it comes; 0 = off (default: %(default)s)",
    )
    vad.add_argument(
        "--smart-turn-threshold",
        type=float,
        default=0.5,
        help="Smart Turn probability from which a turn counts as complete (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    from ..speculate import check_uri
    from ..vad.segmenter import VadSettings
    from .handler import AsrSettings, normalize_language
    from .models import ModelNotFoundError, resolve_model
    from .smart_turn import SmartTurnNotFoundError, default_model_path
    from .transcriber import WhisperSettings

    try:
        vad = VadSettings(
            threshold=args.vad_threshold,
            min_speech_ms=args.min_speech_ms,
            min_silence_ms=args.early_silence_ms,
        )
        if args.smart_turn and args.endpointing_ms is None:
            raise ValueError("--smart-turn needs --endpointing-ms (without it the client ends the turn)")
        if args.speculation_uri:
            check_uri(args.speculation_uri, "--speculation-uri")
        if not 0.0 < args.smart_turn_threshold < 1.0:
            raise ValueError(
                f"--smart-turn-threshold must be between 0 and 1, got {args.smart_turn_threshold}"
            )
        index = Index(args.download_models) if args.download_models else None
        model_path = resolve_model(args.model, args.cache_dir, index)
        turn_path = default_model_path() if args.smart_turn else None
    except (ValueError, ModelNotFoundError, SmartTurnNotFoundError) as err:
        _LOGGER.error("%s", err)
        return 2
    whisper = WhisperSettings(
        model_path=model_path,
        model_name=args.model if args.model in KNOWN_MODELS else model_path.name,
        device=args.device,
        compute_type=args.compute_type,
        cpu_threads=args.threads,
        beam_size=args.beam_size,
        min_window_s=args.min_window or None,
    )
    settings = AsrSettings(
        language=normalize_language(args.language),
        vad=vad,
        pad_ms=args.pad_ms,
        max_seconds=args.max_seconds,
        endpoint_ms=args.endpointing_ms,
        no_speech_seconds=args.no_speech_seconds,
        turn_threshold=args.smart_turn_threshold,
        decode_ahead_ms=args.decode_ahead_ms if 0 < args.decode_ahead_ms < args.early_silence_ms else None,
        partial_every_ms=args.partial_every_ms if args.partial_every_ms > 0 else None,
    )
    limits = FrameLimits(max_payload_bytes=args.max_payload_bytes)
    asyncio.run(
        _main(
            args.uri,
            args.zeroconf,
            whisper,
            settings,
            limits,
            metrics_options(args),
            turn_path,
            args.speculation_uri,
        )
    )
    return 0


async def _main(
    uri, zeroconf, whisper, settings, limits: FrameLimits, metrics=None, turn_path=None, speculation_uri=None
) -> None:
    from ..speculate import SpeculationLink
    from ..vad.silero import SileroModel
    from .handler import AsrEventHandler
    from .info import asr_info
    from .smart_turn import SmartTurnModel
    from .transcriber import WhisperTranscriber

    vad_model = await asyncio.to_thread(SileroModel)
    turn_model = await asyncio.to_thread(SmartTurnModel, turn_path) if turn_path else None
    if turn_model is not None:
        await asyncio.to_thread(turn_model.warm_up)
        _LOGGER.info(
            "Smart Turn v3 end-of-turn model loaded from %s (complete from %g)",
            turn_model.path,
            settings.turn_threshold,
        )
    transcriber = await asyncio.to_thread(WhisperTranscriber, whisper)
    _LOGGER.info(
        "Whisper %s from %s loaded in %.2f s (%s, %s, %d threads, beam %d, window %s); language %s",
        whisper.model_name,
        whisper.model_path,
        transcriber.load_seconds,
        whisper.device,
        whisper.compute_type,
        whisper.cpu_threads,
        whisper.beam_size,
        f"{whisper.min_window_s:g} s+" if whisper.min_window_s else "30 s",
        settings.language or "auto",
    )
    info = asr_info(transcriber, endpointing=settings.endpoint_ms is not None)
    link = SpeculationLink(speculation_uri) if speculation_uri else None
    if link is not None:
        _LOGGER.info("Early transcripts go to the persona service at %s (speculative replies)", link.uri)
    factory = partial(
        AsrEventHandler,
        info=lambda: info,
        limits=limits,
        transcriber=transcriber,
        vad_model=vad_model,
        settings=settings,
        turn_model=turn_model,
        link=link,
    )
    try:
        await serve(uri, factory, zeroconf, metrics)
    finally:
        if link is not None:
            await link.close()
        transcriber.close()
