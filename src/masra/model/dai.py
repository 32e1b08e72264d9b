"""DAI: decoupled alignment interaction with a context-aware codebook (docs/method.md, "DAI").

Each clip attends over [query tokens ; codebook C_v]. The softmax covers both, but the output sums only
the query-token values, so the mass a clip puts on the codebook is absorbed instead of being forced
onto the query. a_i, the attention mass on the query tokens, is a per-clip relevance estimate.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from masra.errors import MasraError
from masra.model.rank_mean import mean_over_ranks

CONTEXT_MODES = ("mlp", "xattn")


class ContextCodebook(nn.Module):
    """A learned codebook C [K, d] made video-aware: C_v = C + f(clips).

    ``context="mlp"``: f = MLP([masked mean ; masked max] of the clips), shared by all K entries.
    ``context="xattn"``: f = one multi-head cross-attention from the entries to the clips.
    The last layer of f starts at zero, so C_v = C at initialisation.
    """

    def __init__(self, d_model: int, codebook_size: int = 32, context: str = "mlp", nheads: int = 8) -> None:
        super().__init__()
        if context not in CONTEXT_MODES:
            raise MasraError(f"must be one of {', '.join(CONTEXT_MODES)}, got {context!r}", field="model.dai.context")
        self.context = context
        self.codebook = nn.Parameter(torch.randn(codebook_size, d_model))  # [K, d], unit-scale like LN'd text
        if context == "mlp":
            self.context_mlp = nn.Sequential(
                nn.Linear(2 * d_model, d_model), nn.ReLU(inplace=True), nn.Linear(d_model, d_model)
            )
            last = self.context_mlp[-1]
        else:
            self.context_attn = nn.MultiheadAttention(d_model, nheads, batch_first=True)
            last = self.context_attn.out_proj
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, video: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
        """video [B, L, d] (projected clips), video_mask [B, L] float -> C_v [B, K, d]."""
        batch = video.shape[0]
        base = self.codebook.unsqueeze(0).expand(batch, -1, -1)  # [B, K, d]
        mask = video_mask.unsqueeze(-1).to(video.dtype)  # [B, L, 1]
        if self.context == "mlp":
            count = mask.sum(1).clamp_min(1.0)  # [B, 1]
            mean = (video * mask).sum(1) / count  # [B, d]
            lowest = torch.finfo(video.dtype).min
            peak = video.masked_fill(mask == 0, lowest).amax(1)  # [B, d]
            peak = torch.where(mask.sum(1) > 0, peak, torch.zeros_like(peak))  # an empty video has no max
            shift = self.context_mlp(torch.cat([mean, peak], dim=-1))  # [B, d]
            return base + shift.unsqueeze(1)
        shift, _ = self.context_attn(
            base, video, video, key_padding_mask=~video_mask.bool(), need_weights=False
        )  # [B, K, d]
        return base + shift


class DecoupledCrossAttention(nn.Module):
    """Multi-head cross-attention from clips to [query tokens ; codebook], summing only query values.

    A learnable per-head logit bias on the codebook columns starts at -log(K): the codebook then takes
    about 1/(N+1) of the mass at initialisation, so DAI starts close to plain cross-attention.
    """

    def __init__(self, d_model: int, nheads: int, codebook_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % nheads:
            raise MasraError(f"hidden_dim {d_model} is not divisible by nheads {nheads}", field="model.nheads")
        self.nheads = nheads
        self.head_dim = d_model // nheads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.codebook_bias = nn.Parameter(torch.full((nheads,), -math.log(codebook_size)))
        self.attn_dropout = nn.Dropout(dropout)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_mask: torch.Tensor,
        codebook: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query [B, L, d] (clips + pos), key [B, N, d] (text + pos), value [B, N, d], key_mask [B, N] float,
        codebook [B, K, d] -> (output [B, L, d], relevance [B, L] = head-averaged mass on query tokens)."""
        batch, length, _ = query.shape
        n_text = key.shape[1]
        heads, dh = self.nheads, self.head_dim
        q = self.q_proj(query).view(batch, length, heads, dh)  # [B, L, H, dh]
        k = self.k_proj(torch.cat([key, codebook], dim=1)).view(batch, -1, heads, dh)  # [B, N+K, H, dh]
        v = self.v_proj(value).view(batch, n_text, heads, dh)  # [B, N, H, dh]
        scores = torch.einsum("blhe,bkhe->bhlk", q, k) / math.sqrt(dh)  # [B, H, L, N+K]
        text_scores = scores[..., :n_text]
        code_scores = scores[..., n_text:] + self.codebook_bias.view(1, heads, 1, 1).to(scores.dtype)
        text_scores = text_scores.masked_fill(~key_mask.bool()[:, None, None, :], torch.finfo(scores.dtype).min)
        # The codebook is always a valid key, so no row is fully masked and the softmax never gives NaN.
        attn = torch.cat([text_scores, code_scores], dim=-1).softmax(dim=-1)  # [B, H, L, N+K]
        text_attn = attn[..., :n_text]  # [B, H, L, N]
        relevance = text_attn.sum(-1).mean(1)  # [B, L]
        out = torch.einsum("bhln,bnhe->blhe", self.attn_dropout(text_attn), v).reshape(batch, length, -1)
        return self.out_proj(out), relevance


def masked_query_mean(query: torch.Tensor, query_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the valid query tokens: query [B, N, d], query_mask [B, N] -> [B, d]."""
    mask = query_mask.unsqueeze(-1).to(query.dtype)
    return (query * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def dai_relevance_loss(
    relevance: torch.Tensor, relevant_mask: torch.Tensor | None, video_mask: torch.Tensor
) -> torch.Tensor:
    """BCE(a_i, 1[clip i relevant]) averaged over valid clips (of all DDP ranks); relevance, relevant_mask,
    video_mask [B, L].

    Zero when the batch has no relevance labels or no valid clip.
    """
    valid = video_mask.float()
    clips = mean_over_ranks(valid.sum())
    if relevant_mask is None:
        return relevance.new_zeros((), dtype=torch.float32)
    prob = relevance.float().clamp(1e-6, 1.0 - 1e-6)
    target = relevant_mask.float()
    bce = -(target * prob.log() + (1.0 - target) * (1.0 - prob).log())  # [B, L]
    return (bce * valid).sum() / clips.clamp_min(1.0)


def codebook_diversity_loss(codebook: torch.Tensor) -> torch.Tensor:
    """Mean |cos| between distinct entries of each sample's codebook: codebook [B, K, d] -> scalar."""
    size = codebook.shape[1]
    if size < 2:
        return codebook.new_zeros((), dtype=torch.float32)
    unit = F.normalize(codebook.float(), dim=-1)
    cos = unit @ unit.transpose(1, 2)  # [B, K, K]
    off_diagonal = ~torch.eye(size, dtype=torch.bool, device=codebook.device)
    return cos.abs()[:, off_diagonal].mean()


def codebook_decoupling_loss(codebook: torch.Tensor, query_mean: torch.Tensor) -> torch.Tensor:
    """Mean max(0, cos(C_v,k, q̄)): codebook [B, K, d], query_mean [B, d] -> scalar.

    q̄ is detached: this loss moves the codebook away from the query, never the query away from it.
    """
    cos = F.cosine_similarity(codebook.float(), query_mean.detach().float().unsqueeze(1), dim=-1)  # [B, K]
    return cos.clamp_min(0.0).mean()
