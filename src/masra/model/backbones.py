"""The backbones (``model.backbone``): the base grounding models MASRA's parts attach to, each equal to its
anchor's own code (docs/model.md, "Backbones"). One declaration each: the model class, its saliency loss and
the checks of the settings it cannot honour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from masra.config import ModelConfig
from masra.errors import MasraError
from masra.model.base_model import BaseGroundingModel
from masra.model.grounding import GroundingModel
from masra.model.moment_detr import MomentDETR


@dataclass(frozen=True)
class Backbone:
    """``model``: the class, called as ``model(model_cfg, v_feat_dim, t_feat_dim, semantic_dim)``;
    ``saliency_loss``: the criterion's saliency loss (masra.model.criterion, ``SetCriterion.get_loss``);
    ``validate(model_cfg)``: refuses settings the backbone does not have."""

    name: str
    model: type[BaseGroundingModel]
    saliency_loss: str
    validate: Callable[[ModelConfig], None] | None = None


def _validate_qd_detr(cfg: ModelConfig) -> None:
    if cfg.contrastive_align:
        raise MasraError("the contrastive alignment heads are Moment-DETR's: set model.backbone=moment_detr or "
                         "model.contrastive_align=false", field="model.contrastive_align")


def _validate_moment_detr(cfg: ModelConfig) -> None:
    if cfg.use_negative_pairs:
        raise MasraError("Moment-DETR has no negative pairs: set model.use_negative_pairs=false (the packaged "
                         "config moment_detr does)", field="model.use_negative_pairs")
    if cfg.encoder_window:
        raise MasraError("Moment-DETR's joint encoder over [clips ; query tokens] has no windowed attention: "
                         "set model.encoder_window=0", field="model.encoder_window")


BACKBONES: dict[str, Backbone] = {
    "qd_detr": Backbone("qd_detr", GroundingModel, "saliency", _validate_qd_detr),
    "moment_detr": Backbone("moment_detr", MomentDETR, "saliency_hinge", _validate_moment_detr),
}


def get_backbone(cfg: ModelConfig) -> Backbone:
    """The backbone named by ``cfg.backbone`` (a ModelConfig), after its checks of ``cfg``."""
    backbone = BACKBONES.get(cfg.backbone)
    if backbone is None:
        raise MasraError(f"unknown backbone {cfg.backbone!r}; one of {', '.join(BACKBONES)}", field="model.backbone")
    if backbone.validate is not None:
        backbone.validate(cfg)
    return backbone
