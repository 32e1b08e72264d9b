"""Factory: config -> (model, criterion)."""

from __future__ import annotations

from masra.config import Config, LossConfig, ModelConfig
from masra.model.backbones import get_backbone
from masra.model.base_model import BaseGroundingModel
from masra.model.criterion import SET_LOSSES, AuxRamp, SetCriterion
from masra.model.matcher import HungarianMatcher
from masra.model.parts import PARTS


def build_criterion(loss_cfg: LossConfig, dec_layers: int, model_cfg: ModelConfig | None = None) -> SetCriterion:
    """The backbone's criterion: set losses on every decoder layer (weights span/giou/label) + its saliency loss,
    plus the loss of every MASRA part enabled in ``model_cfg`` (its weighted terms, weights from ``loss_cfg``)."""
    weight_dict = {
        "loss_span": loss_cfg.span,
        "loss_giou": loss_cfg.giou,
        "loss_label": loss_cfg.label,
        "loss_saliency": loss_cfg.saliency,
    }
    model_cfg = model_cfg or ModelConfig()
    backbone = get_backbone(model_cfg)
    # Without matching (saliency-only datasets) the anchors compute the saliency loss alone.
    extra = backbone.losses if loss_cfg.use_matcher else {}
    losses = [*SET_LOSSES, backbone.saliency_loss, *extra]
    for terms in extra.values():
        weight_dict.update({term: getattr(loss_cfg, name) for term, name in terms.items()})
    layer_terms = ["loss_span", "loss_giou", "loss_label"]
    if model_cfg.contrastive_align:
        losses.append("contrastive_align")
        weight_dict["loss_contrastive_align"] = loss_cfg.contrastive_align
        layer_terms.append("loss_contrastive_align")
    parts = [part for part in PARTS if part.loss is not None and getattr(model_cfg, part.name).enabled]
    for part in parts:
        weight_dict.update({term: getattr(loss_cfg, name) for term, name in part.weights.items()})
    if loss_cfg.aux_loss:
        for i in range(dec_layers - 1):
            weight_dict.update({f"{name}_{i}": weight_dict[name] for name in layer_terms})
    matcher = HungarianMatcher(loss_cfg.match_span, loss_cfg.match_giou, loss_cfg.match_label)
    return SetCriterion(
        matcher,
        weight_dict,
        losses=losses,
        eos_coef=loss_cfg.eos_coef,
        saliency_margin=loss_cfg.saliency_margin,
        rank_temperature=loss_cfg.rank_temperature,
        negative_pair=loss_cfg.negative_pair,
        contrastive_temperature=loss_cfg.contrastive_temperature,
        aux_loss=loss_cfg.aux_loss,
        use_matcher=loss_cfg.use_matcher,
        parts=parts,
        loss_cfg=loss_cfg,
        aux_ramp=AuxRamp(loss_cfg.aux_ramp_start, loss_cfg.aux_ramp_epochs),
        aux_chance_norm=loss_cfg.aux_chance_norm,
    )


def build_model(
    cfg: Config, v_feat_dim: int, t_feat_dim: int, semantic_dim: int | None = None
) -> tuple[BaseGroundingModel, SetCriterion]:
    """The backbone (``model.backbone``) and its criterion for the given input dims (v_feat_dim includes the
    2 TEF dims).

    semantic_dim is the prior text-embedding dimension used by SGE and ESTA; the baseline does not need it.
    """
    model = get_backbone(cfg.model).model(cfg.model, v_feat_dim, t_feat_dim, semantic_dim)
    criterion = build_criterion(cfg.loss, cfg.model.dec_layers, cfg.model)
    return model, criterion
