"""DAI: decoupled alignment interaction with a context-aware codebook (docs/method.md, "DAI").

Each clip attends over [query tokens ; codebook C_v]. The softmax covers both, but the output sums only
the query-token values, so the mass a clip puts on the codebook is absorbed instead of being forced
onto the query. a_i, the attention mass on the query tokens, is a per-clip relevance estimate.
The codebook is made context-aware per entry: each entry attends to the video (``context="xattn"``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from masra.errors import MasraError
from masra.model.dropout import Dropout
from masra.model.rank_mean import mean_over_ranks

CONTEXT_MODES = ("mlp", "xattn")


class ContextCodebook(nn.Module):
    """A learned codebook C [K, d] made video-aware: C_v = C + f(clips).

    ``context="xattn"`` (default): f = one multi-head cross-attention from the entries to the clips, so each
    entry gets its own context.
    ``context="mlp"``: f = MLP([masked mean ; masked max] of the clips), one shift shared by all K entries.
    The last layer of f starts at zero, so C_v = C at initialisation.
    """

    def __init__(self, d_model: int, codebook_size: int = 32, context: str = "xattn", nheads: int = 8) -> None:
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
    ``codebook_values``: the entries also carry values (v_proj of C_v), so the absorbed mass adds them to
    the output instead of being discarded.
    """

    def __init__(
        self, d_model: int, nheads: int, codebook_size: int, dropout: float = 0.0, codebook_values: bool = False
    ) -> None:
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
        self.attn_dropout = Dropout(dropout)
        self.codebook_values = codebook_values

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
        if self.codebook_values:
            value = torch.cat([value, codebook], dim=1)
        v = self.v_proj(value).view(batch, value.shape[1], heads, dh)  # [B, N (+K), H, dh]
        scores = torch.einsum("blhe,bkhe->bhlk", q, k) / math.sqrt(dh)  # [B, H, L, N+K]
        text_scores = scores[..., :n_text]
        code_scores = scores[..., n_text:] + self.codebook_bias.view(1, heads, 1, 1).to(scores.dtype)
        text_scores = text_scores.masked_fill(~key_mask.bool()[:, None, None, :], torch.finfo(scores.dtype).min)
        # The codebook is always a valid key, so no row is fully masked and the softmax never gives NaN.
        attn = torch.cat([text_scores, code_scores], dim=-1).softmax(dim=-1)  # [B, H, L, N+K]
        text_attn = attn[..., :n_text]  # [B, H, L, N]
        relevance = text_attn.sum(-1).mean(1)  # [B, L]
        summed = attn if self.codebook_values else text_attn
        out = torch.einsum("bhln,bnhe->blhe", self.attn_dropout(summed), v).reshape(batch, length, -1)
        return self.out_proj(out), relevance


def dai_relevance_loss(
    relevance: torch.Tensor, relevant_mask: torch.Tensor | None, video_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE(a_i, 1[clip i relevant]) averaged over the valid clips (of all DDP ranks) of the samples that have
    both relevant and irrelevant clips; relevance, relevant_mask, video_mask [B, L]. Returns (loss, chance level).

    A sample whose clips are all relevant (TVSum / YouTube Highlights, where nearly every clip has a
    label > 0) would only teach a_i -> 1, i.e. switch the codebook off, so it is left out. The chance level
    is the BCE of the constant prediction at the positive rate (the binary entropy of that rate), per process.
    Both zero when no sample qualifies.
    """
    valid = video_mask.float()
    target = valid * (0.0 if relevant_mask is None else relevant_mask.float())
    positives = target.sum(1)
    mixed = ((positives > 0) & (positives < valid.sum(1))).float().unsqueeze(1)  # [B, 1]
    weight = valid * mixed  # [B, L]
    local = weight.sum()
    count = mean_over_ranks(local)  # a collective: before any early return
    zero = relevance.new_zeros((), dtype=torch.float32)
    if local == 0:
        return zero, zero
    prob = relevance.float().clamp(1e-6, 1.0 - 1e-6)
    bce = -(target * prob.log() + (1.0 - target) * (1.0 - prob).log())  # [B, L]
    rate = ((target * weight).sum() / local).clamp(1e-6, 1.0 - 1e-6)
    chance = -(rate * rate.log() + (1.0 - rate) * (1.0 - rate).log())
    return (bce * weight).sum() / count, chance.detach()


def codebook_diversity_loss(codebook: torch.Tensor) -> torch.Tensor:
    """Mean |cos| between distinct entries: codebook [K, d] (or [B, K, d], averaged over samples) -> scalar.

    Applied to the learned codebook C, not to C_v: with a context shift shared by the entries, the loss on
    C_v would push against the shift instead of spreading the entries.
    """
    entries = codebook if codebook.dim() == 3 else codebook.unsqueeze(0)  # [B, K, d]
    size = entries.shape[1]
    if size < 2:
        return entries.new_zeros((), dtype=torch.float32)
    unit = F.normalize(entries.float(), dim=-1)
    cos = unit @ unit.transpose(1, 2)  # [B, K, K]
    off_diagonal = ~torch.eye(size, dtype=torch.bool, device=codebook.device)
    return cos.abs()[:, off_diagonal].mean()
