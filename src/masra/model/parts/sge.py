"""SGE: semantic-guided enhancement (docs/method.md, "SGE").

A semantic head φ maps each clip into the prior text space (trained to pick out the clip's own caption among
its neighbours', ``sge_caption_loss``); its L2-normalised prediction is projected back by ψ, layer-normalised to
the scale of the (post-norm) memory, and fused through a gate that starts at σ(-2) ≈ 0.12:
h_i <- h_i + σ(W[h_i ; s_i]) ⊙ s_i, with s_i = LN(ψ(φ̂_i)) and φ̂_i = φ(h_i)/‖φ(h_i)‖
(``model.sge.back_norm: none``, the former fusion, leaves out the LN).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from masra.data.batch import GroundingBatch
from masra.errors import MasraError
from masra.model.banded import band_dot, band_pair_mask
from masra.model.layers import run_layer
from masra.model.parts.base import Outputs, Part, PartModule, Stats, check_choice
from masra.model.rank_mean import mean_over_ranks

# σ(-2) ≈ 0.12: the fused semantics start as a small correction of the baseline memory.
GATE_BIAS_INIT = -2.0
# Two captions this close are the same caption (paraphrase variants of one sentence are farther apart).
SAME_CAPTION_COS = 0.99
BACK_NORMS = ("layer_norm", "none")


@dataclass
class SGEConfig:
    enabled: bool = False
    # layer_norm: the fused semantics s_i = LN(ψ(φ̂_i)) have the memory's scale; none: s_i = ψ(φ̂_i), about
    # 0.04 per channel at initialisation, so the fusion moved the memory by ~0.5 % (docs/method.md, "SGE").
    back_norm: str = "layer_norm"


@dataclass
class SGELossConfig:
    sge_caption: float = 1.0
    # Each clip picks out its caption among the captions within this many clips, logits and soft targets at
    # this temperature.
    sge_band: int = 16
    sge_temperature: float = 0.1


class SemanticGuidedEnhancement(PartModule):
    def __init__(self, d_model: int, semantic_dim: int | None, back_norm: str = "layer_norm") -> None:
        super().__init__()
        check_choice(back_norm, BACK_NORMS, "model.sge.back_norm")
        self.back_norm = back_norm
        if semantic_dim is None:
            raise MasraError(
                "SGE needs the prior text dimension: give the training data a prior_dir", field="data.prior_dir"
            )
        if semantic_dim <= 0:
            raise MasraError(f"the prior text dimension must be positive, got {semantic_dim}", field="data.prior_dir")
        self.semantic_head = nn.Sequential(
            nn.Linear(d_model, d_model), nn.ReLU(inplace=True), nn.Linear(d_model, semantic_dim)
        )  # φ
        self.back_projection = nn.Linear(semantic_dim, d_model)  # ψ
        self.gate = nn.Linear(2 * d_model, d_model)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, GATE_BIAS_INIT)

    def forward(
        self, memory: torch.Tensor, video_mask: torch.Tensor, stats: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """memory [B, L, d], video_mask [B, L] -> (enhanced memory [B, L, d], semantics φ(h) [B, L, Ds]).

        Padded clips are returned unchanged. ``stats`` (a dict, or None) receives ``sge_gate``, the mean gate
        over valid clips and channels. Long training inputs run under activation checkpointing like the
        encoder layers (:func:`masra.model.layers.run_layer`): same function, O(input) memory kept for backward.
        """
        return run_layer(self._enhance, memory, video_mask, stats)

    def enhance(self, memory: torch.Tensor, video_mask: torch.Tensor, stats: Stats | None) -> tuple[torch.Tensor, Outputs]:
        memory, semantics = self(memory, video_mask, stats)
        return memory, {"sge_semantics": semantics}

    def _enhance(
        self, memory: torch.Tensor, video_mask: torch.Tensor, stats: dict[str, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        semantics = self.semantic_head(memory)  # [B, L, Ds]
        back = self.back_projection(F.normalize(semantics, dim=-1))  # [B, L, d]
        if self.back_norm == "layer_norm":
            back = F.layer_norm(back, back.shape[-1:])
        gate = torch.sigmoid(self.gate(torch.cat([memory, back], dim=-1)))  # [B, L, d]
        mask = video_mask.unsqueeze(-1).to(memory.dtype)  # [B, L, 1]
        if stats is not None:
            with torch.no_grad():
                stats["sge_gate"] = (gate.float() * mask).sum() / (mask.sum() * gate.shape[-1]).clamp_min(1.0)
        update = gate * back * mask
        return memory + update, semantics


def sge_loss(outputs: Outputs, batch: GroundingBatch, loss_cfg: SGELossConfig) -> dict[str, torch.Tensor]:
    """Each clip picks out its own caption among its neighbours' (soft-target cross-entropy), with the retrieval
    accuracy next to its chance level for the log."""
    return sge_caption_loss(
        outputs["sge_semantics"], batch.caption_emb, batch.caption_mask, outputs["video_mask"], batch.has_priors,
        band=loss_cfg.sge_band, temperature=loss_cfg.sge_temperature,
    )


def centre_on_video(captions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """captions [B, L, Ds] minus each sample's mean over its valid clips (valid [B, L] bool); others 0."""
    weight = valid.unsqueeze(-1).to(captions.dtype)
    mean = (captions * weight).sum(1, keepdim=True) / weight.sum(1, keepdim=True).clamp_min(1.0)
    return (captions - mean) * weight


def sge_caption_loss(
    semantics: torch.Tensor,
    caption_emb: torch.Tensor | None,
    caption_mask: torch.Tensor | None,
    video_mask: torch.Tensor,
    has_priors: torch.Tensor | None,
    band: int = 16,
    temperature: float = 0.1,
) -> dict[str, torch.Tensor]:
    """Each clip picks out its own caption among the captions of its neighbours (|i - j| <= w, same video).

    The captions are first centred on their video's mean caption (c̃ = c - mean, over the sample's captioned
    clips): what all captions of a video share is removed, so only what tells a clip's caption from the
    others is rewarded (1 - cos(φ(h_i), c_i), the former loss, was nearly minimised by predicting the video's
    mean caption for every clip). Logits cos(φ(h_i), c̃_j) / τ over the valid captioned clips j of i's window;
    soft targets softmax_j(cos(c̃_i, c̃_j) / τ): clips that share a caption (one event's clips often do) share
    the target. Cross-entropy averaged over the rows with at least two candidates (of all DDP ranks).

    semantics [B, L, Ds], caption_emb [B, L, Ds], caption_mask / video_mask [B, L], has_priors [B]. Returns
    ``loss_sge_caption``, its chance level ``loss_sge_caption_chance`` (the loss of a uniform prediction,
    log #candidates), ``sge_caption_accuracy`` (the top-1 candidate carries the clip's own caption, cos >= 0.99)
    and ``sge_caption_accuracy_chance`` (the share of candidates that do). All zero when no row qualifies.
    """
    valid = video_mask.bool() & (False if caption_mask is None else caption_mask.bool())  # [B, L]: no mask, no clip
    if has_priors is not None:
        valid = valid & has_priors.bool().unsqueeze(1)
    pairs = band_pair_mask(valid.float(), band, include_self=True)  # [B, L, 2w+1]
    candidates = pairs.sum(-1)  # [B, L]
    rows = valid & (candidates >= 2)
    row_count = mean_over_ranks(rows.sum().float())  # a collective: before any early return
    zero = semantics.new_zeros((), dtype=torch.float32)
    names = ("loss_sge_caption", "loss_sge_caption_chance", "sge_caption_accuracy", "sge_caption_accuracy_chance")
    if caption_emb is None or not rows.any():
        return dict.fromkeys(names, zero)
    captions = F.normalize(caption_emb.float(), dim=-1)
    specific = F.normalize(centre_on_video(captions, valid), dim=-1)  # what tells a caption from the video's mean
    lowest = torch.finfo(torch.float32).min
    logits = band_dot(F.normalize(semantics.float(), dim=-1), specific, band).float() / temperature  # [B, L, 2w+1]
    target = (band_dot(specific, specific, band).float() / temperature).masked_fill(~pairs, lowest).softmax(-1)
    caption_cos = band_dot(captions, captions, band).float()  # [B, L, 2w+1]
    log_prob = logits.masked_fill(~pairs, lowest).log_softmax(-1)
    cross_entropy = -torch.where(pairs, target * log_prob, torch.zeros_like(log_prob)).sum(-1)  # [B, L]
    with torch.no_grad():
        same = (caption_cos >= SAME_CAPTION_COS) & pairs
        picked = logits.masked_fill(~pairs, lowest).argmax(-1, keepdim=True)
        hit = same.gather(-1, picked).squeeze(-1).float()
        local = rows.sum().float()
        accuracy = (hit * rows).sum() / local
        accuracy_chance = ((same.sum(-1) / candidates.clamp_min(1)) * rows).sum() / local
        chance = (candidates.clamp_min(1).float().log() * rows).sum() / local
    return {
        "loss_sge_caption": (cross_entropy * rows).sum() / row_count,
        "loss_sge_caption_chance": chance,
        "sge_caption_accuracy": accuracy,
        "sge_caption_accuracy_chance": accuracy_chance,
    }


def validate(cfg: SGEConfig) -> None:
    check_choice(cfg.back_norm, BACK_NORMS, "model.sge.back_norm")


PART = Part(
    name="sge",
    config=SGEConfig,
    build=lambda cfg, ctx: SemanticGuidedEnhancement(ctx.hidden_dim, ctx.semantic_dim, cfg.back_norm),
    loss=sge_loss,
    loss_config=SGELossConfig,
    weights={"loss_sge_caption": "sge_caption"},
    needs_semantic_dim=True,
    validate=validate,
)
