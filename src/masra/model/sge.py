"""SGE: semantic-guided enhancement (docs/method.md, "SGE").

A semantic head φ maps each clip into the prior text space (trained towards the clip captions); its
L2-normalised prediction is projected back by ψ and fused through a gate that starts almost closed:
h_i <- h_i + σ(W[h_i ; ψ(φ̂_i)]) ⊙ ψ(φ̂_i), with φ̂_i = φ(h_i)/‖φ(h_i)‖.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from masra.errors import MasraError
from masra.model.layers import run_layer
from masra.model.rank_mean import mean_over_ranks

# σ(-2) ≈ 0.12: the fused semantics start as a small correction of the baseline memory.
GATE_BIAS_INIT = -2.0


class SemanticGuidedEnhancement(nn.Module):
    def __init__(self, d_model: int, semantic_dim: int | None) -> None:
        super().__init__()
        if semantic_dim is None:
            raise MasraError(
                "SGE needs the prior text dimension: set it or give the training data a prior_dir",
                field="model.sge.semantic_dim",
            )
        if semantic_dim <= 0:
            raise MasraError(f"must be positive, got {semantic_dim}", field="model.sge.semantic_dim")
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

    def _enhance(
        self, memory: torch.Tensor, video_mask: torch.Tensor, stats: dict[str, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        semantics = self.semantic_head(memory)  # [B, L, Ds]
        back = self.back_projection(F.normalize(semantics, dim=-1))  # [B, L, d]
        gate = torch.sigmoid(self.gate(torch.cat([memory, back], dim=-1)))  # [B, L, d]
        mask = video_mask.unsqueeze(-1).to(memory.dtype)  # [B, L, 1]
        if stats is not None:
            with torch.no_grad():
                stats["sge_gate"] = (gate.float() * mask).sum() / (mask.sum() * gate.shape[-1]).clamp_min(1.0)
        update = gate * back * mask
        return memory + update, semantics


def sge_caption_loss(
    semantics: torch.Tensor,
    caption_emb: torch.Tensor | None,
    caption_mask: torch.Tensor | None,
    video_mask: torch.Tensor,
    has_priors: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """1 - cos(φ(h_i), c_i) averaged over valid captioned clips of samples with priors (of all DDP ranks).

    semantics [B, L, Ds], caption_emb [B, L, Ds], caption_mask / video_mask [B, L], has_priors [B].
    Returns (loss, chance level); the chance level is the loss of predicting the batch's mean caption for
    every clip (per process). Both zero when no clip qualifies.
    """
    weight = video_mask.float() * (0.0 if caption_mask is None else caption_mask.float())  # [B, L]
    if has_priors is not None:
        weight = weight * has_priors.float().unsqueeze(1)
    local = weight.sum()
    count = mean_over_ranks(local)  # a collective: before any early return
    zero = semantics.new_zeros((), dtype=torch.float32)
    if caption_emb is None or local == 0:
        return zero, zero
    captions = caption_emb.float()
    cos = F.cosine_similarity(semantics.float(), captions, dim=-1)  # [B, L]
    mean_caption = (captions * weight.unsqueeze(-1)).sum((0, 1)) / local  # [Ds]
    chance = ((1.0 - F.cosine_similarity(captions, mean_caption.expand_as(captions), dim=-1)) * weight).sum() / local
    return ((1.0 - cos) * weight).sum() / count, chance.detach()
