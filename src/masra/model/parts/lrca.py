"""LRCA: local relational consistency alignment (docs/method.md, "LRCA").

Textual relation R^t_ij = cos(c_i, c_j) between clip captions; model relation R^v_ij = cos(P h_i, P h_j)
with a small projection P of the temporal encoder's clips. P·h are also the features of SORA's first-order
relation, so what LRCA aligns is what SORA uses. For every valid captioned clip i, over its neighbours j
with 1 <= |i - j| <= w (valid, captioned, same video): KL( softmax_j(R^t_ij / τ_t) ‖ softmax_j(R^v_ij / τ_v) ),
averaged over the rows with at least two neighbours (with one, both distributions are that neighbour and
the KL is 0 whatever the model does). Computed on the band only: O(L·w) time and memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from masra.data.batch import GroundingBatch
from masra.model.banded import band_dot, band_pair_mask
from masra.model.parts.base import Outputs, Part, PartModule
from masra.model.rank_mean import mean_over_ranks


@dataclass
class LRCAConfig:
    enabled: bool = False
    video_temperature_init: float = 0.1
    proj_dim: int = 128


@dataclass
class LRCALossConfig:
    lrca: float = 1.0
    # LRCA compares the relations of each clip with its neighbours within this many clips, and sharpens the
    # caption relations with this temperature.
    lrca_band: int = 16
    lrca_text_temperature: float = 0.1


class LocalRelationalConsistency(PartModule):
    """P (the relation projection, applied to the encoder's clips) and the learnable τ_v."""

    def __init__(self, d_model: int, proj_dim: int = 128, video_temperature_init: float = 0.1) -> None:
        super().__init__()
        self.projection = nn.Linear(d_model, proj_dim)  # P
        self.log_video_temperature = nn.Parameter(torch.tensor(math.log(video_temperature_init)))

    def video_temperature(self) -> torch.Tensor:
        return self.log_video_temperature.exp().clamp(0.01, 1.0)

    # ----- the part's hooks (masra.model.parts.base) -----------------------------------------------------
    def relate(self, clips: torch.Tensor) -> Outputs:
        """P·h of the encoder's clips: what LRCA aligns with the captions, and SORA's relation features."""
        return {"lrca_video_proj": self.projection(clips)}

    def outputs(
        self, memory: torch.Tensor, video_mask: torch.Tensor, batch: GroundingBatch, projected: torch.Tensor
    ) -> Outputs:
        return {"lrca_video_temperature": self.video_temperature()}

    def diagnostics(self) -> dict[str, torch.Tensor]:
        return {"lrca_temperature": self.video_temperature()}


def banded_cosine(x: torch.Tensor, band: int) -> torch.Tensor:
    """x [B, L, D] -> [B, L, 2w+1]: cos(x_i, x_{i+o-w}) (0 outside the sequence), in O(L·(w + D)) memory."""
    unit = F.normalize(x, dim=-1)
    return band_dot(unit, unit, band)


def lrca_loss(
    video_proj: torch.Tensor,
    video_temperature: torch.Tensor,
    caption_emb: torch.Tensor | None,
    caption_mask: torch.Tensor | None,
    video_mask: torch.Tensor,
    has_priors: torch.Tensor | None,
    band: int = 16,
    text_temperature: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Banded relational KL; video_proj [B, L, P], caption_emb [B, L, Ds], masks [B, L], has_priors [B].

    Returns (loss, chance level): the chance level is KL(p_text ‖ uniform), the loss of a model relation
    that carries no information (per process). The loss is averaged over the rows of all DDP ranks; both are
    zero when no row has two neighbours.
    """
    clip_valid = video_mask.float() * (0.0 if caption_mask is None else caption_mask.float())  # [B, L]
    if has_priors is not None:
        clip_valid = clip_valid * has_priors.float().unsqueeze(1)
    pairs = band_pair_mask(clip_valid, band, include_self=False)  # [B, L, 2w+1]
    neighbours = pairs.sum(-1)  # [B, L]
    rows = neighbours >= 2
    row_count = mean_over_ranks(rows.sum())  # a collective: before any early return
    zero = video_proj.new_zeros((), dtype=torch.float32)
    if caption_emb is None or not rows.any():
        return zero, zero
    text_rel = banded_cosine(caption_emb.float(), band) / text_temperature  # [B, L, 2w+1]
    video_rel = banded_cosine(video_proj.float(), band) / video_temperature.float()
    lowest = torch.finfo(text_rel.dtype).min
    log_p_text = text_rel.masked_fill(~pairs, lowest).log_softmax(-1)
    log_p_video = video_rel.masked_fill(~pairs, lowest).log_softmax(-1)
    # Masked pairs have p_text = 0 exactly; where() keeps 0·(-huge) from turning into NaN.
    p_text = log_p_text.exp()
    kl = torch.where(pairs, p_text * (log_p_text - log_p_video), torch.zeros_like(text_rel)).sum(-1)  # [B, L]
    log_uniform = -neighbours.clamp_min(1).float().log().unsqueeze(-1)  # [B, L, 1]
    kl_uniform = torch.where(pairs, p_text * (log_p_text - log_uniform), torch.zeros_like(text_rel)).sum(-1)
    chance = (kl_uniform * rows).sum() / rows.sum()
    return (kl * rows).sum() / row_count, chance.detach()


def loss(outputs: Outputs, batch: GroundingBatch, loss_cfg: LRCALossConfig) -> dict[str, torch.Tensor]:
    """Banded KL between caption relations and model relations, with its chance level."""
    if "lrca_video_proj" not in outputs:
        return {"loss_lrca": outputs["saliency_scores"].new_zeros((), dtype=torch.float32)}
    value, chance = lrca_loss(
        outputs["lrca_video_proj"], outputs["lrca_video_temperature"], batch.caption_emb, batch.caption_mask,
        outputs["video_mask"], batch.has_priors, band=loss_cfg.lrca_band, text_temperature=loss_cfg.lrca_text_temperature,
    )
    return {"loss_lrca": value, "loss_lrca_chance": chance}


PART = Part(
    name="lrca",
    config=LRCAConfig,
    build=lambda cfg, ctx: LocalRelationalConsistency(ctx.hidden_dim, cfg.proj_dim, cfg.video_temperature_init),
    loss=loss,
    loss_config=LRCALossConfig,
    weights={"loss_lrca": "lrca"},
)
