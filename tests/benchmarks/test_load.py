"""The pure helpers of bench/load.py: percentiles, the memory slope, the transcript check."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

LOAD_PY = Path(__file__).resolve().parents[2] / "bench" / "load.py"


def _load_module():
    spec = importlib.util.spec_from_file_location("bench_load", LOAD_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


load = _load_module()


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(20, 0, -1)]  # 20 .. 1, unsorted on purpose
    assert load.percentile(values, 0.5) == 10.0
    assert load.percentile(values, 0.95) == 19.0
    assert load.percentile(values, 1.0) == 20.0
    assert load.percentile([7.0], 0.95) == 7.0
    assert load.percentile([], 0.95) is None


def test_fit_slope() -> None:
    assert load.fit_slope([0, 10, 20, 30], [100, 100, 100, 100]) == 0.0
    assert load.fit_slope([0, 10, 20, 30], [5, 25, 45, 65]) == pytest.approx(2.0)
    assert load.fit_slope([5, 5, 5], [1, 2, 3]) is None  # no requests done: no slope
    assert load.fit_slope([1], [1]) is None


def test_memory_summary_ignores_the_warm_up() -> None:
    mib = 2**20
    samples = [load.RssSample(0.0, 0, 50 * mib), load.RssSample(1.0, 5, 90 * mib)]  # warm-up: growth
    samples += [load.RssSample(2.0 + i, 10 + 10 * i, 100 * mib + i * 512 * 1024) for i in range(9)]
    summary = load.memory_summary(samples, duration=10.0)
    assert summary["rss_after_warmup_mib"] == 100.0
    assert summary["rss_end_mib"] == 104.0
    assert summary["slope_kib_per_100_requests"] == pytest.approx(5120.0)  # 512 KiB per 10 requests
    assert load.memory_summary([], 10.0)["slope_kib_per_100_requests"] is None


@pytest.mark.parametrize(
    ("heard", "rate"),
    [
        (" Turn on the kitchen light.", 0.0),
        ("turn on the kitchen lights", 0.2),
        ("", 1.0),
        ("open the garage door and the gate", 1.4),
    ],
)
def test_word_error_rate(heard: str, rate: float) -> None:
    assert load.word_error_rate("Turn on the kitchen light.", heard) == pytest.approx(rate)


def test_service_list() -> None:
    assert load.service_list("tts, vad") == ["tts", "vad"]
    with pytest.raises(argparse.ArgumentTypeError, match="choose from"):
        load.service_list("vad,whisper")


def test_check_vad() -> None:
    clip = load.Clip("Turn on the light.", bytes(2 * 16000 * 3), speech_start=0.5, speech_end=1.8)  # 3 s
    load.check_vad(clip, 0.52, 2.3)
    for started, stopped in ((None, 2.3), (1.2, 2.3), (0.52, 1.0), (0.52, 3.5)):
        with pytest.raises(load.WrongAnswer):
            load.check_vad(clip, started, stopped)
