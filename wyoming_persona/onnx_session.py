"""The small ONNX models shared by all connections of a service (Silero VAD, Smart Turn), on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def cpu_session(path: Path, threads: int = 1) -> Any:
    """An onnxruntime session for `path`: `threads` intra-op threads, no memory arena (these models are
    small; the arena would keep its peak for good), onnxruntime's own logging off."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = threads
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 4
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"], sess_options=options)
