"""What the ASR server tells `describe`.

`requires_external_vad` stays True: Home Assistant then keeps its own end-of-speech detection (with the
user's sensitivity setting) and sends audio-stop, and our VAD only trims and starts decoding early.
"""

from __future__ import annotations

from wyoming.info import AsrModel, AsrProgram, Attribution, Info

from .. import __version__
from .transcriber import WhisperTranscriber

_PROJECT = Attribution(name="wyoming-persona", url="https://github.com/wyoming-persona/wyoming-persona")
_WHISPER = Attribution(
    name="OpenAI Whisper via faster-whisper", url="https://github.com/SYSTRAN/faster-whisper"
)


def asr_info(transcriber: WhisperTranscriber) -> Info:
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
                requires_external_vad=True,
            )
        ]
    )
