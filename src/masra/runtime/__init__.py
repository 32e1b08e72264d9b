"""The torch-free runtime: a ``masra export`` folder on onnxruntime and NumPy (extra ``runtime``).

:class:`OnnxGrounder` does what :class:`masra.inference.Grounder` does on features, with the same code for
everything but the forward (masra.model.feature_inference, masra.model.postprocess)::

    from masra.runtime import OnnxGrounder
    grounder = OnnxGrounder.from_export("exports/qvh")
    pred = grounder.predict(video_feats, query_feats, duration=150)   # raw [L, D] features, [N, Dt] tokens
    pred.windows[0], pred.saliency

Nothing here imports torch (tests/runtime/test_runtime.py runs it with torch unimportable). The names below
load on first use, so the exporter can read this package's format module (``bundle``) without onnxruntime.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "OnnxGrounder": "masra.runtime.grounder",
    "read_export": "masra.runtime.bundle",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'masra.runtime' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
