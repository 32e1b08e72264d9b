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

    def forward(self, memory: torch.Tensor, video_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """memory [B, L, d], video_mask [B, L] -> (enhanced memory [B, L, d], semantics φ(h) [B, L, Ds]).

        Padded clips are returned unchanged.
        """
        semantics = self.semantic_head(memory)  # [B, L, Ds]
        back = self.back_projection(F.normalize(semantics, dim=-1))  # [B, L, d]
        gate = torch.sigmoid(self.gate(torch.cat([memory, back], dim=-1)))  # [B, L, d]
        update = gate * back * video_mask.unsqueeze(-1).to(memory.dtype)
        return memory + update, semantics


def sge_caption_loss(
    semantics: torch.Tensor,
    caption_emb: torch.Tensor | None,
    caption_mask: torch.Tensor | None,
    video_mask: torch.Tensor,
    has_priors: torch.Tensor | None,
) -> torch.Tensor:
    """1 - cos(φ(h_i), c_i) averaged over valid captioned clips of samples with priors (of all DDP ranks).

    semantics [B, L, Ds], caption_emb [B, L, Ds], caption_mask / video_mask [B, L], has_priors [B].
    Zero when no clip qualifies.
    """
    weight = video_mask.float() * (0.0 if caption_mask is None else caption_mask.float())  # [B, L]
    if has_priors is not None:
        weight = weight * has_priors.float().unsqueeze(1)
    count = mean_over_ranks(weight.sum())
    if caption_emb is None or weight.sum() == 0:
        return semantics.new_zeros((), dtype=torch.float32)
    cos = F.cosine_similarity(semantics.float(), caption_emb.float(), dim=-1)  # [B, L]
    return ((1.0 - cos) * weight).sum() / count
