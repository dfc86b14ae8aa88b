"""Piper's VITS model cut before its audio decoder, so a sentence's audio is decoded and sent in chunks.

A Piper voice is one ONNX graph: phoneme ids -> text encoder, durations and flow -> latent frames
(one per `hop_length` samples) -> HiFi-GAN decoder -> audio. The decoder is over half of the work and
only looks a few frames to either side, so it can run on a chunk of frames with `PAD_FRAMES` of context
on each side and give the same samples as one run over the whole sentence (checked in the tests).
Decoding a short first chunk first means audio starts long before the sentence is finished.

The cut needs the `onnx` package (at load time only); without it, or for a graph that does not have
the expected shape, `split_graph` says why in a warning, returns None and the voice runs whole.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_LOGGER = logging.getLogger(__name__)

DECODER_PREFIX = "/dec/"
PAD_FRAMES = 12
"""Context frames on each side of a chunk: from 12 on, the joe voice's chunks match one whole decoder
run to float rounding (8 leaves errors of about -57 dB)."""
FIRST_FRAMES = 16
"""Frames of the first chunk (about 0.19 s of audio at 22050 Hz): small, so audio starts early."""


@dataclass(frozen=True)
class SplitGraph:
    """The two halves of a Piper model, serialized for onnxruntime."""

    encoder: bytes
    decoder: bytes
    latent: str
    """The tensor between them: latent frames (batch, channels, frames), chunked along frames."""
    shared: tuple[str, ...]
    """Other tensors the decoder needs whole (a multi-speaker voice's speaker embedding)."""


class _Unsplittable(Exception):
    """The graph does not have the shape the cut expects (the reason is the message)."""


def split_graph(model_path: Path) -> SplitGraph | None:
    """Cut the model before its first decoder node; None, with a warning saying why, when that is not
    possible (the voice then runs whole: same audio, but it starts only when the sentence is done)."""
    try:
        import onnx
    except ImportError:
        _LOGGER.warning(
            "The onnx package is not installed (it comes with wyoming-persona[tts]): Piper voices are "
            "decoded whole, not in chunks, so audio starts later"
        )
        return None
    try:
        return _split(onnx.load(str(model_path)))
    except _Unsplittable as err:
        _LOGGER.warning(
            "%s: cannot cut the model before its audio decoder (%s); this voice is decoded whole, "
            "not in chunks, so its audio starts later",
            model_path,
            err,
        )
        return None


def _split(model) -> SplitGraph:
    import onnx
    from onnx import helper

    graph = model.graph
    initializers = {tensor.name for tensor in graph.initializer}
    first = next((n for n in graph.node if n.name.startswith(DECODER_PREFIX)), None)
    if first is None:
        raise _Unsplittable(f"no node whose name starts with {DECODER_PREFIX}")
    latents = [name for name in first.input if name and name not in initializers]
    if len(latents) != 1:
        raise _Unsplittable(f"the first decoder node {first.name} takes {len(latents)} tensors, not one")
    latent = latents[0]
    # Nodes are stored in topological order: the decoder is everything downstream of the latent.
    downstream = {latent}
    decoder_nodes = []
    for node in graph.node:
        if any(name in downstream for name in node.input):
            decoder_nodes.append(node)
            downstream.update(node.output)
    outputs = {output.name for output in graph.output}
    if not outputs <= downstream:
        raise _Unsplittable(f"an output does not come from the decoder: {sorted(outputs - downstream)}")
    picked = {id(node) for node in decoder_nodes}
    encoder_nodes = [node for node in graph.node if id(node) not in picked]
    decoder_inputs = {name for node in decoder_nodes for name in node.input}
    encoder_made = {name for node in encoder_nodes for name in node.output}
    graph_inputs = {value.name for value in graph.input}
    external = sorted(name for name in decoder_inputs - downstream - initializers if name)
    missing = [name for name in external if name not in encoder_made and name not in graph_inputs]
    if missing:
        raise _Unsplittable(f"the decoder needs tensors nothing makes: {missing}")
    shared = tuple(name for name in external if name != latent)
    direct = [name for name in shared if name in graph_inputs]
    if direct:
        raise _Unsplittable(f"the decoder reads model inputs directly: {direct}")

    def value(name: str):
        return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)

    def initializers_for(nodes) -> list:
        used = {name for node in nodes for name in node.input}
        return [tensor for tensor in graph.initializer if tensor.name in used]

    links = [value(latent), *(value(name) for name in shared)]
    encoder = helper.make_graph(
        encoder_nodes, "encoder", list(graph.input), links, initializers_for(encoder_nodes)
    )
    decoder = helper.make_graph(
        decoder_nodes, "decoder", links, list(graph.output), initializers_for(decoder_nodes)
    )

    def serialize(part) -> bytes:
        built = helper.make_model(part, opset_imports=model.opset_import, ir_version=model.ir_version)
        return built.SerializeToString()

    return SplitGraph(serialize(encoder), serialize(decoder), latent, shared)


GROWTH = 4
"""Each chunk is this many times longer than the one before: decoding a chunk takes a small part of
the time the chunks before it take to play (the decoder runs at a few percent of real time), and a
long sentence still has few joins, each of which decodes 2 * PAD_FRAMES extra frames."""


def chunk_bounds(frames: int, first: int = FIRST_FRAMES) -> list[tuple[int, int]]:
    """[start, end) frames of each chunk: `first`, then GROWTH times the last; a short tail joins."""
    bounds = []
    start, size = 0, max(1, first)
    while start < frames:
        end = start + size
        if frames - end < size:  # what would be left is shorter than the next chunk: take it now
            end = frames
        bounds.append((start, end))
        start, size = end, size * GROWTH
    return bounds


class SplitVoice:
    """Runs a split Piper model: the encoder once per sentence, then the decoder chunk by chunk."""

    def __init__(self, split: SplitGraph, hop_length: int) -> None:
        import onnxruntime

        self.latent = split.latent
        self.shared = split.shared
        self.hop_length = hop_length
        # The encoder is some 4000 tiny operators per sentence: handing each to a second thread costs
        # more than it saves (measured: less CPU and less time on one thread). The decoder's large
        # convolutions do gain from Piper's default of one thread per core.
        self.encoder = onnxruntime.InferenceSession(
            split.encoder, sess_options=session_options(threads=1), providers=["CPUExecutionProvider"]
        )
        self.decoder = onnxruntime.InferenceSession(
            split.decoder, sess_options=session_options(), providers=["CPUExecutionProvider"]
        )

    def audio_chunks(self, feeds: dict[str, np.ndarray], first: int = FIRST_FRAMES) -> Iterator[np.ndarray]:
        """Float audio of one sentence, chunk by chunk; the chunks join to exactly one decoder run."""
        outputs = self.encoder.run(None, feeds)
        latent = outputs[0]
        shared = dict(zip(self.shared, outputs[1:], strict=True))
        frames = latent.shape[2]
        hop = self.hop_length
        for start, end in chunk_bounds(frames, first):
            lo, hi = max(0, start - PAD_FRAMES), min(frames, end + PAD_FRAMES)
            audio = self.decoder.run(
                None, {self.latent: np.ascontiguousarray(latent[:, :, lo:hi]), **shared}
            )[0].reshape(-1)
            yield audio[(start - lo) * hop : (end - lo) * hop]


def session_options(threads: int | None = None):
    """Piper's defaults, except that idle threads sleep instead of spinning.

    Spinning threads keep a core busy after every run; on a small machine that CPU belongs to the
    other voice services (and to the event loop writing the audio just decoded).
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options
