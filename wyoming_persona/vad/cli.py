"""`wyoming-persona vad`: the Silero VAD Wyoming server."""

from __future__ import annotations

import argparse
import asyncio
import logging
from functools import partial
from pathlib import Path

from ..options import add_server_arguments, metrics_options
from ..wyoming_server import FrameLimits, serve

_LOGGER = logging.getLogger(__name__)


def add_vad_arguments(parser: argparse.ArgumentParser, min_silence_ms: int = 500) -> None:
    group = parser.add_argument_group("voice activity detection")
    group.add_argument("--vad-model", type=Path, help="Silero VAD v6 ONNX file (default: faster-whisper's)")
    group.add_argument("--threshold", type=float, default=0.5, help="speech probability threshold (0-1)")
    group.add_argument(
        "--min-speech-ms", type=int, default=250, help="speech shorter than this is ignored (ms)"
    )
    group.add_argument(
        "--min-silence-ms",
        type=int,
        default=min_silence_ms,
        help="silence that ends an utterance (ms, default: %(default)s)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_arguments(parser, "vad")
    add_vad_arguments(parser)
    parser.add_argument(
        "--max-payload-bytes",
        type=int,
        default=FrameLimits().max_payload_bytes,
        help="largest audio payload accepted in one frame (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    from .segmenter import VadSettings
    from .silero import SileroModelError, default_model_path

    try:
        settings = VadSettings(
            threshold=args.threshold, min_speech_ms=args.min_speech_ms, min_silence_ms=args.min_silence_ms
        )
        model_path = args.vad_model or default_model_path()
        if not model_path.is_file():
            raise SileroModelError(f"Silero VAD model not found: {model_path}")
    except (ValueError, SileroModelError) as err:
        _LOGGER.error("%s", err)
        return 2
    limits = FrameLimits(max_payload_bytes=args.max_payload_bytes)
    asyncio.run(_main(args.uri, args.zeroconf, model_path, settings, limits, metrics_options(args)))
    return 0


async def _main(
    uri: str, zeroconf: str | None, model_path: Path | None, settings, limits: FrameLimits, metrics=None
) -> None:
    from .handler import VadEventHandler, vad_info
    from .silero import SileroModel

    model = await asyncio.to_thread(SileroModel, model_path)
    _LOGGER.info(
        "Silero VAD %s: threshold %.2f, min speech %d ms, min silence %d ms",
        model.path.name,
        settings.threshold,
        settings.min_speech_ms,
        settings.min_silence_ms,
    )
    factory = partial(VadEventHandler, info=vad_info, limits=limits, model=model, settings=settings)
    await serve(uri, factory, zeroconf, metrics)
