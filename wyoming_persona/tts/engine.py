"""What a synthesize request means: persona or plain voice -> loaded Piper voice + settings; and Info."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from wyoming.info import Attribution, Info, TtsProgram, TtsVoice, TtsVoiceSpeaker

from .. import __version__
from ..personas.loader import check_json
from ..personas.manager import PersonaManager
from ..personas.model import Persona, VoiceSpec
from .pool import VoicePool
from .speech_cache import SpeechCache
from .voices import VoiceCatalog, VoiceFile, VoiceNotFoundError
from .worker import VoiceSettings

_LOGGER = logging.getLogger(__name__)

PIPER_ATTRIBUTION = Attribution(name="rhasspy", url="https://github.com/rhasspy/piper")
PROGRAM_ATTRIBUTION = Attribution(name="wyoming-persona", url="https://github.com/wyoming-persona")

ACTIVE_VOICE = "active"
"""A voice that always speaks as the active persona: what an HA pipeline picks to follow switches,
since HA sends the pipeline's chosen voice with every request."""
INLINE_VOICE = "persona_voice"
"""Our key in a synthesize or synthesize-start event: a persona's whole `voice:` section (model by
name, speaker, speed, pitch, volume) spoken instead of `voice`, so the persona studio can play
settings that are not saved yet. Home Assistant never sends it."""
INLINE_LABEL = "(unsaved voice)"


class VoiceRequestError(LookupError):
    """The requested voice, speaker or persona voice cannot be used; `code` names the kind of problem."""

    def __init__(self, text: str, code: str) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


@dataclass(frozen=True)
class NoiseSettings:
    """Piper's generator noise; None keeps each voice's own value. Tests use 0 for determinism."""

    noise_scale: float | None = None
    noise_w_scale: float | None = None


@dataclass(frozen=True)
class Target:
    """The resolved voice of one response."""

    label: str
    """Persona id or plain voice name, for logs."""
    voice: VoiceFile
    settings: VoiceSettings


class TtsEngine:
    """Shared by every connection: the voice catalog, the persona manager and the voice pool."""

    def __init__(
        self,
        catalog: VoiceCatalog,
        manager: PersonaManager,
        pool: VoicePool,
        noise: NoiseSettings = NoiseSettings(),
        speech_cache: SpeechCache | None = None,
    ) -> None:
        self.catalog = catalog
        self.manager = manager
        self.pool = pool
        self.noise = noise
        self.speech_cache = speech_cache
        """Responses spoken before (a speculative reply ahead), replayed for the same text and voice;
        None: every response is synthesized."""
        self._warned: set[str] = set()

    # -- requests -------------------------------------------------------------------------------
    def resolve(self, name: str | None, speaker: str | None = None) -> Target:
        """Persona id -> its settings; plain voice -> neutral; None or "active" -> the active persona."""
        persona = self.manager.personas.get(name) if name else None
        if persona is not None:
            return self._persona_target(persona)
        if not name or name == ACTIVE_VOICE:
            return self._persona_target(self.manager.active())
        voices = self.catalog.voices()
        voice = voices.get(name)
        if voice is None:
            raise VoiceRequestError(
                f"unknown voice {name!r}; available voices: {', '.join(self.available(voices))}",
                "unknown-voice",
            )
        try:
            speaker_id = voice.speaker_id(speaker)
        except VoiceNotFoundError as err:
            raise VoiceRequestError(str(err), "unknown-speaker") from None
        return Target(voice.name, voice, self._settings(speaker_id=speaker_id))

    def resolve_inline(self, data: object) -> Target:
        """The `persona_voice` of a request: validated like the `voice:` of a persona file; the model
        must be a voice of the catalog by name (a request never makes the service open a file path)."""
        spec, errors = check_json(data, VoiceSpec, INLINE_VOICE, Path("(request)"))
        if errors or spec is None:
            text = "; ".join(f"{error.field}: {error.message}" for error in errors)
            raise VoiceRequestError(f"bad {INLINE_VOICE}: {text}", "bad-voice")
        voices = self.catalog.voices()
        if spec.model not in voices:
            raise VoiceRequestError(
                f"{INLINE_VOICE}.model: unknown voice {spec.model!r}; voices: {', '.join(sorted(voices))}",
                "unknown-voice",
            )
        try:
            return self._spec_target(INLINE_LABEL, spec, voices[spec.model])
        except VoiceNotFoundError as err:
            raise VoiceRequestError(f"{INLINE_VOICE}.speaker: {err}", "unknown-speaker") from None

    def available(self, voices: dict[str, VoiceFile] | None = None) -> list[str]:
        voices = self.catalog.voices() if voices is None else voices
        personas = self.manager.personas
        return [ACTIVE_VOICE, *personas, *(name for name in voices if name not in personas)]

    def _persona_target(self, persona: Persona) -> Target:
        try:
            voice = self.catalog.resolve(persona.voice.model)
            return self._spec_target(persona.id, persona.voice, voice)
        except VoiceNotFoundError as err:
            raise VoiceRequestError(f"persona {persona.id!r} cannot speak: {err}", "voice-missing") from None

    def _spec_target(self, label: str, spec: VoiceSpec, voice: VoiceFile) -> Target:
        """VoiceNotFoundError for a speaker the voice does not have."""
        speaker_id = voice.speaker_id(spec.speaker)
        settings = self._settings(
            speaker_id=speaker_id, speed=spec.speed, pitch=spec.pitch, volume=spec.volume
        )
        return Target(label, voice, settings)

    def _settings(self, **values) -> VoiceSettings:
        return VoiceSettings(
            noise_scale=self.noise.noise_scale, noise_w_scale=self.noise.noise_w_scale, **values
        )

    # -- describe -------------------------------------------------------------------------------
    def info(self) -> Info:
        """The active-persona voice, every persona as a voice, then every plain Piper voice.

        Rebuilt on each describe, so edited personas show up without a restart.
        """
        voices = self.catalog.voices()
        advertised = []
        personas = self.manager.personas
        languages: dict[str, None] = {}
        for persona in personas.values():
            voice = voices.get(persona.voice.model)
            if voice is None:
                try:
                    voice = self.catalog.resolve(persona.voice.model)
                except VoiceNotFoundError as err:
                    self._warn_once(persona.id, "Not advertising persona %r: %s", persona.id, err)
                    continue
            languages.update(dict.fromkeys(voice.languages))
            advertised.append(
                TtsVoice(
                    name=persona.id,
                    description=f"{persona.name} ({voice.name})",
                    attribution=PIPER_ATTRIBUTION,
                    installed=True,
                    version=None,
                    languages=list(voice.languages),
                )
            )
        if ACTIVE_VOICE not in personas:
            active = TtsVoice(
                name=ACTIVE_VOICE,
                description="Active persona (follows persona switches)",
                attribution=PROGRAM_ATTRIBUTION,
                installed=True,
                version=None,
                languages=list(languages),
            )
            advertised.insert(0, active)
        for voice in voices.values():
            if voice.name in personas:
                continue
            advertised.append(
                TtsVoice(
                    name=voice.name,
                    description=f"{voice.name} (Piper voice)",
                    attribution=PIPER_ATTRIBUTION,
                    installed=True,
                    version=None,
                    languages=list(voice.languages),
                    speakers=[TtsVoiceSpeaker(name=s) for s in voice.speakers] or None,
                )
            )
        program = TtsProgram(
            name="wyoming-persona-tts",
            description="Piper text to speech in each persona's voice",
            attribution=PROGRAM_ATTRIBUTION,
            installed=True,
            version=__version__,
            voices=advertised,
            supports_synthesize_streaming=True,
        )
        return Info(tts=[program])

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _LOGGER.warning(message, *args)
