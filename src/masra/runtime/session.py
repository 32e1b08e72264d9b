"""An onnxruntime session on the CPU for an exported model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from masra.errors import MasraError
from masra.extras import require_extra


def open_session(path: str | Path, threads: int | None = None, spinning: bool = True) -> Any:
    """An ``onnxruntime.InferenceSession`` of the ONNX file ``path`` (``threads``: intra-op threads, None =
    onnxruntime's choice). ``spinning=False`` makes idle intra-op threads sleep instead of spin-waiting for the
    next run: slower to wake, but they take no CPU from other work between runs (benchmarks alternating with it)."""
    require_extra("runtime", "the ONNX runtime (masra.runtime)", modules=("onnxruntime",))
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for unreadable or invalid models
        raise MasraError(f"onnxruntime cannot load it: {err}", file=path) from None
