"""The backbones (``model.backbone``): the base grounding models MASRA's parts attach to, each equal to its
anchor's own code (docs/model.md, "Backbones"). One declaration each: the model class, its saliency loss, its
further losses and the checks of the settings it cannot honour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from masra.config import ModelConfig
from masra.errors import MasraError
from masra.model.base_model import BaseGroundingModel
from masra.model.cg_detr import AUXILIARY_ENCODER_HEADS, CGDETR
from masra.model.grounding import GroundingModel
from masra.model.moment_detr import MomentDETR


@dataclass(frozen=True)
class Backbone:
    """``model``: the class, called as ``model(model_cfg, v_feat_dim, t_feat_dim, semantic_dim)``;
    ``saliency_loss``: the criterion's saliency loss (masra.model.criterion, ``SetCriterion.get_loss``);
    ``validate(model_cfg)``: refuses settings the backbone does not have; ``losses``: its further losses
    (criterion names, run on the final outputs with Hungarian matching on) with the LossConfig field weighting
    each of their terms."""

    name: str
    model: type[BaseGroundingModel]
    saliency_loss: str
    validate: Callable[[ModelConfig], None] | None = None
    losses: dict[str, dict[str, str]] = field(default_factory=dict)


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


def _validate_cg_detr(cfg: ModelConfig) -> None:
    _validate_qd_detr(cfg)
    if cfg.encoder_window:
        raise MasraError("CG-DETR's temporal encoder has no windowed attention: set model.encoder_window=0",
                         field="model.encoder_window")
    if cfg.hidden_dim % AUXILIARY_ENCODER_HEADS:
        raise MasraError(f"CG-DETR's dummy and sentence encoders have {AUXILIARY_ENCODER_HEADS} heads: hidden_dim "
                         f"{cfg.hidden_dim} must be a multiple of {AUXILIARY_ENCODER_HEADS}", field="model.hidden_dim")
    if cfg.dai.enabled and cfg.dai.codebook_values:
        raise MasraError("on CG-DETR, DAI's codebook joins the dummy tokens, which add no value to the clips: set "
                         "model.dai.codebook_values=false", field="model.dai.codebook_values")
    own = cfg.cg_detr
    for name in ("num_dummies", "dummy_layers", "sentence_layers", "moment_layers", "prompt_bank"):
        if getattr(own, name) < 1:
            raise MasraError("must be at least 1", field=f"model.cg_detr.{name}")
    if not 1 <= own.prompts <= own.prompt_bank:
        raise MasraError(f"must be between 1 and model.cg_detr.prompt_bank ({own.prompt_bank})",
                         field="model.cg_detr.prompts")


# CG-DETR's losses besides the set and saliency ones: criterion name -> {term: LossConfig field}.
CG_DETR_LOSSES = {
    "moment_sentence": {"loss_ms_align": "moment_sentence"},
    "distill": {"loss_distill": "distill"},
    "orthogonal_dummy": {"loss_orthogonal_dummy": "orthogonal_dummy"},
}

BACKBONES: dict[str, Backbone] = {
    "qd_detr": Backbone("qd_detr", GroundingModel, "saliency", _validate_qd_detr),
    "moment_detr": Backbone("moment_detr", MomentDETR, "saliency_hinge", _validate_moment_detr),
    "cg_detr": Backbone("cg_detr", CGDETR, "saliency_cg_detr", _validate_cg_detr, CG_DETR_LOSSES),
}


def get_backbone(cfg: ModelConfig) -> Backbone:
    """The backbone named by ``cfg.backbone`` (a ModelConfig), after its checks of ``cfg``."""
    backbone = BACKBONES.get(cfg.backbone)
    if backbone is None:
        raise MasraError(f"unknown backbone {cfg.backbone!r}; one of {', '.join(BACKBONES)}", field="model.backbone")
    if backbone.validate is not None:
        backbone.validate(cfg)
    return backbone
