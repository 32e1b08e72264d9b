"""An onnxruntime session on the CPU for an exported model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from masra.errors import MasraError
from masra.extras import require_extra


def open_session(path: str | Path, threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` of the ONNX file ``path`` (``threads``: intra-op threads, None =
    onnxruntime's choice)."""
    require_extra("runtime", "the ONNX runtime (masra.runtime)", modules=("onnxruntime",))
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for unreadable or invalid models
        raise MasraError(f"onnxruntime cannot load it: {err}", file=path) from None
