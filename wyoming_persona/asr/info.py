"""What the ASR server tells `describe`.

`requires_external_vad` is True by default: Home Assistant then keeps its own end-of-speech detection
(with the user's sensitivity setting, and its 15 s command cap) and sends audio-stop; our VAD trims and
decodes early, so the transcript is ready when audio-stop comes and self-endpointing would save little.
With `--endpointing-ms` the server ends utterances itself and says False, so HA 2026.5+ skips its own
VAD and takes our transcript as soon as it is sent.
"""

from __future__ import annotations

from wyoming.info import AsrModel, AsrProgram, Attribution, Info

from .. import __version__
from .transcriber import WhisperTranscriber

_PROJECT = Attribution(name="wyoming-persona", url="https://github.com/wyoming-persona/wyoming-persona")
_WHISPER = Attribution(
    name="OpenAI Whisper via faster-whisper", url="https://github.com/SYSTRAN/faster-whisper"
)


def asr_info(transcriber: WhisperTranscriber, endpointing: bool = False) -> Info:
    settings = transcriber.settings
    return Info(
        asr=[
            AsrProgram(
                name="wyoming-persona-whisper",
                attribution=_PROJECT,
                installed=True,
                description="faster-whisper with Silero VAD trimming and speculative early decoding",
                version=__version__,
                models=[
                    AsrModel(
                        name=settings.model_name,
                        attribution=_WHISPER,
                        installed=True,
                        description=f"Whisper {settings.model_name} ({settings.compute_type})",
                        version=None,
                        languages=transcriber.languages(),
                    )
                ],
                supports_transcript_streaming=True,
                requires_external_vad=not endpointing,
            )
        ]
    )
