"""Model resolution: known names from the PyPI packages, base reassembled once, directories checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from wyoming_persona.asr.models import BASE_MODEL_BYTES, ModelNotFoundError, resolve_model


def test_tiny_en_comes_from_its_package() -> None:
    path = resolve_model("tiny.en")
    assert (path / "model.bin").is_file() and (path / "tokenizer.json").is_file()


def test_base_is_assembled_once_and_repaired_when_damaged(tmp_path: Path) -> None:
    cache = tmp_path / "whisper-base"
    assert resolve_model("base", cache) == cache
    model = cache / "model.bin"
    assert model.stat().st_size == BASE_MODEL_BYTES
    assert sorted(p.name for p in cache.iterdir()) == [
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.txt",
    ]
    first = model.stat().st_mtime_ns
    resolve_model("base", cache)
    assert model.stat().st_mtime_ns == first, "a complete cache is reused, not rewritten"
    with model.open("r+b") as handle:
        handle.truncate(1000)
    resolve_model("base", cache)
    assert model.stat().st_size == BASE_MODEL_BYTES


def test_a_directory_path_is_accepted_and_checked(tmp_path: Path) -> None:
    assert resolve_model(str(resolve_model("tiny.en"))) == resolve_model("tiny.en")
    with pytest.raises(ModelNotFoundError, match="missing"):
        resolve_model(str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="unknown model 'small'"):
        resolve_model("small")
