"""The grounding models (the QD-DETR, Moment-DETR and CG-DETR backbones + MASRA parts), matcher, criterion and post-processing.

The names below load on first use: ``masra.config`` assembles its dataclasses from ``masra.model.parts``, so
importing this package must not import ``masra.config`` back (PEP 562 lazy attributes).
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "GroundingModel": "masra.model.grounding",
    "HungarianMatcher": "masra.model.matcher",
    "MomentDETR": "masra.model.moment_detr",
    "SetCriterion": "masra.model.criterion",
    "build_criterion": "masra.model.build",
    "build_model": "masra.model.build",
    "outputs_to_submission": "masra.model.postprocess",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'masra.model' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
