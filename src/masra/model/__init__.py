"""The grounding model (QD-DETR class baseline + MASRA parts), matcher, criterion and post-processing."""

from masra.model.build import build_criterion, build_model
from masra.model.criterion import SetCriterion
from masra.model.grounding import GroundingModel
from masra.model.matcher import HungarianMatcher
from masra.model.postprocess import outputs_to_submission

__all__ = [
    "GroundingModel",
    "HungarianMatcher",
    "SetCriterion",
    "build_criterion",
    "build_model",
    "outputs_to_submission",
]
