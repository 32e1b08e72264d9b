"""DAI: decoupled alignment interaction with a context-aware codebook (docs/method.md, "DAI").

Each clip attends over [query tokens ; codebook C_v]. The softmax covers both, but the output sums only
the query-token values, so the mass a clip puts on the codebook is absorbed instead of being forced
onto the query. a_i, the attention mass on the query tokens, is a per-clip relevance estimate.
The codebook is made context-aware per entry (``context="slots"``, the default): the entries compete for the
clips as in slot attention (a softmax over the entries for each clip), so different entries read different
clips instead of all reading the same average of the video.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from masra.data.batch import GroundingBatch
from masra.errors import MasraError
from masra.model.dropout import Dropout
from masra.model.parts.base import Outputs, Part, PartContext, PartModule, Stats, check_choice
from masra.model.rank_mean import mean_over_ranks

CONTEXT_MODES = ("slots", "xattn", "mlp")


@dataclass
class DAIConfig:
    enabled: bool = False
    codebook_size: int = 32
    # "slots": the entries compete for the clips (slot attention), each reads its own clips (docs/method.md);
    # "xattn": each entry attends to the clips, C_v,k = C_k + MHA(C_k, clips) (entries may read alike);
    # "mlp": C_v = C + MLP([mean; max] of clips), one shift shared by all entries.
    context: str = "slots"
    # Whether the codebook entries carry values (the absorbed mass then adds their values to the output).
    codebook_values: bool = False
    # Whether each clip's saliency score adds w · logit(a_i), a_i the last T2V layer's relevance (w learned,
    # starts at RELEVANCE_WEIGHT_INIT): the relevance the BCE trains becomes evidence for highlight detection.
    relevance_to_saliency: bool = True


@dataclass
class DAILossConfig:
    dai_relevance: float = 1.0
    dai_diversity: float = 0.1
# The slot attention's logits are cosines between entries and clips divided by a learned temperature that
# starts here: sharp enough that the competition between entries separates them from the first step.
SLOT_TEMPERATURE_INIT = 0.05
# The weight of the relevance log-odds in the saliency score starts here: at initialisation the relevance is
# about the same for every clip, so the term is a near-constant offset that leaves the clips' ranking unchanged.
RELEVANCE_WEIGHT_INIT = 1.0


class ContextCodebook(PartModule):
    """A learned codebook C [K, d] made video-aware: C_v = C + f(clips).

    ``context="slots"`` (default): slot attention. a_kl = softmax over the entries k of cos(q(C_k), k(x_l))/τ
    (each clip l is shared out among the entries), then entry k reads the clips with weights a_kl / Σ_l a_kl:
    f_k = out(Σ_l a_kl v(x_l) / Σ_l a_kl). Entries that win different clips get different contexts.
    ``context="xattn"``: f = one multi-head cross-attention from the entries to the clips (a softmax over the
    clips per entry; nothing makes two entries read different clips).
    ``context="mlp"``: f = MLP([masked mean ; masked max] of the clips), one shift shared by all K entries.
    The last layer of f starts at zero, so C_v = C at initialisation.
    """

    def __init__(
        self,
        d_model: int,
        codebook_size: int = 32,
        context: str = "xattn",
        nheads: int = 8,
        relevance_to_saliency: bool = False,
    ) -> None:
        super().__init__()
        check_choice(context, CONTEXT_MODES, "model.dai.context")
        self.context = context
        self.codebook = nn.Parameter(torch.randn(codebook_size, d_model))  # [K, d], unit-scale like LN'd text
        if context == "mlp":
            self.context_mlp = nn.Sequential(
                nn.Linear(2 * d_model, d_model), nn.ReLU(inplace=True), nn.Linear(d_model, d_model)
            )
            last = self.context_mlp[-1]
        elif context == "slots":
            self.slot_query = nn.Linear(d_model, d_model)
            self.slot_key = nn.Linear(d_model, d_model)
            self.slot_value = nn.Linear(d_model, d_model)
            self.slot_out = nn.Linear(d_model, d_model)
            self.log_slot_temperature = nn.Parameter(torch.tensor(math.log(SLOT_TEMPERATURE_INIT)))
            last = self.slot_out
        else:
            self.context_attn = nn.MultiheadAttention(d_model, nheads, batch_first=True)
            last = self.context_attn.out_proj
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        # Created after every randomly initialised parameter: it draws nothing from the random stream.
        self.relevance_weight = nn.Parameter(torch.tensor(RELEVANCE_WEIGHT_INIT)) if relevance_to_saliency else None

    def forward(
        self, video: torch.Tensor, video_mask: torch.Tensor, stats: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """video [B, L, d] (projected clips), video_mask [B, L] float -> C_v [B, K, d].

        ``stats`` (a dict, or None; slots only) receives ``dai_entry_entropy`` (each entry's read weights
        over the clips, entropy relative to log L: 1 = uniform) and ``dai_entry_specific`` (the share of the
        context read that differs between entries: ‖r_k - mean_k r‖² / ‖r_k‖², 0 = every entry reads the same)."""
        batch = video.shape[0]
        base = self.codebook.unsqueeze(0).expand(batch, -1, -1)  # [B, K, d]
        if self.context == "slots":
            read = self.slot_read(base, video, video_mask, stats)  # [B, K, d]
            return base + self.slot_out(read)
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

    def slot_read(
        self, base: torch.Tensor, video: torch.Tensor, video_mask: torch.Tensor, stats: dict[str, torch.Tensor] | None
    ) -> torch.Tensor:
        """Slot attention's read: base [B, K, d], video [B, L, d], video_mask [B, L] -> [B, K, d]."""
        query = F.normalize(self.slot_query(base), dim=-1)  # [B, K, d]
        key = F.normalize(self.slot_key(video), dim=-1)  # [B, L, d]
        temperature = self.log_slot_temperature.exp().clamp(0.01, 1.0)
        logits = query @ key.transpose(1, 2) / temperature  # [B, K, L]
        share = logits.softmax(dim=1) * video_mask.unsqueeze(1).to(logits.dtype)  # each clip shared out over K
        weights = share / share.sum(-1, keepdim=True).clamp_min(1e-6)  # [B, K, L]: each entry's read weights
        read = weights @ self.slot_value(video)  # [B, K, d]
        if stats is not None:
            with torch.no_grad():
                stats.update(entry_statistics(weights.float(), read.float(), video_mask))
        return read

    # ----- the part's hooks (masra.model.parts.base) -----------------------------------------------------
    def interaction_inputs(self, video: torch.Tensor, video_mask: torch.Tensor, stats: Stats | None) -> dict:
        return {"codebook": self(video, video_mask, stats)}  # [B, K, d], from the clips before interaction

    def after_interaction(
        self, relevances: list[torch.Tensor | None], video_mask: torch.Tensor, inputs: dict, stats: Stats | None
    ) -> Outputs:
        relevance = torch.stack(relevances, dim=1)  # [B, layers, L]
        codebook = inputs["codebook"]
        if stats is not None:
            with torch.no_grad():
                valid = video_mask.float().unsqueeze(1)  # [B, 1, L]
                text_mass = (relevance.float() * valid).sum((0, 2)) / valid.sum().clamp_min(1.0)  # [layers]
                stats.update({f"dai_codebook_mass_l{i}": 1.0 - m for i, m in enumerate(text_mass)})
                stats["dai_context_codebook_cos"] = codebook_diversity_loss(codebook)  # mean |cos| of C_v
        return {
            "dai_relevance_layers": relevance,  # [B, layers, L]
            "dai_relevance": relevance.mean(1),  # [B, L]
            "dai_codebook": codebook,
        }

    def rescore(self, saliency: torch.Tensor, extras: Outputs) -> torch.Tensor:
        """s_i + w · logit(a_i) with a_i the last T2V layer's mass on the query tokens: saliency [B, L]."""
        if self.relevance_weight is None:
            return saliency
        relevance = extras["dai_relevance_layers"][:, -1].float()  # [B, L]
        log_odds = torch.logit(relevance, eps=1e-6)
        return saliency + (self.relevance_weight * log_odds).to(saliency.dtype)

    def outputs(
        self, memory: torch.Tensor, video_mask: torch.Tensor, batch: GroundingBatch, projected: torch.Tensor
    ) -> Outputs:
        return {"dai_codebook_entries": self.codebook}  # [K, d]

    def diagnostics(self) -> dict[str, torch.Tensor]:
        return {} if self.relevance_weight is None else {"dai_relevance_weight": self.relevance_weight}


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
        # The codebook is always a valid key, so no row is fully masked and the softmax never gives NaN. In
        # float32 under autocast too: the relevance (the mass on the text) feeds the saliency scores.
        attn = torch.cat([text_scores, code_scores], dim=-1).float().softmax(dim=-1)  # [B, H, L, N+K]
        text_attn = attn[..., :n_text]  # [B, H, L, N]
        relevance = text_attn.sum(-1).mean(1)  # [B, L]
        summed = attn if self.codebook_values else text_attn
        out = torch.einsum("bhln,bnhe->blhe", self.attn_dropout(summed), v).reshape(batch, length, -1)
        return self.out_proj(out), relevance


def entry_statistics(weights: torch.Tensor, read: torch.Tensor, video_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Diagnostics of the entries' reads: weights [B, K, L] (rows sum to 1 over valid clips), read [B, K, d]
    -> ``dai_entry_entropy`` (mean entropy of a row / log of the sample's valid clip count) and
    ``dai_entry_specific`` (‖r_k - mean_k r‖² / ‖r_k‖², averaged)."""
    clips = video_mask.float().sum(-1)  # [B]
    entropy = -(weights * weights.clamp_min(1e-12).log()).sum(-1).mean(-1)  # [B]
    has_choice = clips > 1
    relative = entropy[has_choice] / clips[has_choice].log()
    specific = (read - read.mean(1, keepdim=True)).square().sum((1, 2)) / read.square().sum((1, 2)).clamp_min(1e-12)
    zero = weights.new_zeros(())
    return {
        "dai_entry_entropy": relative.mean() if has_choice.any() else zero,
        "dai_entry_specific": specific[has_choice].mean() if has_choice.any() else zero,
    }


def dai_relevance_loss(
    relevance: torch.Tensor,
    relevant_mask: torch.Tensor | None,
    video_mask: torch.Tensor,
    relevance_neg: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE(a_i, 1[clip i relevant]) of every T2V layer, averaged over the layers and over the valid clips (of
    all DDP ranks) of the samples that have both relevant and irrelevant clips; with ``relevance_neg`` (the
    negative pairs: each video with another sample's query) every valid clip of those is a target 0.

    relevance, relevance_neg [B, layers, L] (or [B, L] for one layer), relevant_mask, video_mask [B, L].
    Returns (loss, chance level).

    A sample whose clips are all relevant (TVSum / YouTube Highlights, where nearly every clip has a
    label > 0) would only teach a_i -> 1, i.e. switch the codebook off, so its positive pass is left out.
    The chance level is the BCE of the constant prediction at the positive rate (the binary entropy of that
    rate), per process. Both zero when no clip qualifies.
    """
    relevance = relevance if relevance.dim() == 3 else relevance.unsqueeze(1)
    valid = video_mask.float()
    target = valid * (0.0 if relevant_mask is None else relevant_mask.float())
    positives = target.sum(1)
    mixed = ((positives > 0) & (positives < valid.sum(1))).float().unsqueeze(1)  # [B, 1]
    weights, targets, probs = [valid * mixed], [target], [relevance]
    if relevance_neg is not None:
        relevance_neg = relevance_neg if relevance_neg.dim() == 3 else relevance_neg.unsqueeze(1)
        weights.append(valid)
        targets.append(torch.zeros_like(target))
        probs.append(relevance_neg)
    weight, target, prob = torch.cat(weights), torch.cat(targets), torch.cat(probs)  # [B', L], [B', L], [B', l, L]
    local = weight.sum()
    count = mean_over_ranks(local)  # a collective: before any early return
    zero = relevance.new_zeros((), dtype=torch.float32)
    if local == 0:
        return zero, zero
    prob = prob.float().clamp(1e-6, 1.0 - 1e-6)
    target = target.unsqueeze(1)  # [B', 1, L]
    bce = -(target * prob.log() + (1.0 - target) * (1.0 - prob).log())  # [B', layers, L]
    rate = ((target.squeeze(1) * weight).sum() / local).clamp(1e-6, 1.0 - 1e-6)
    chance = -(rate * rate.log() + (1.0 - rate) * (1.0 - rate).log())
    return (bce * weight.unsqueeze(1)).sum() / (count * prob.shape[1]), chance.detach()


def relevance_auc(scores: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Area under the ROC curve of scores [N] for binary target [N] over the entries with weight > 0: the
    probability that a relevant clip scores above an irrelevant one (ties count half); 0.5 = chance.
    Computed from ranks, O(N log N). NaN-free: 0.5 when either class is empty."""
    keep = weight > 0
    scores, target = scores[keep].float(), target[keep] > 0.5
    n_pos, n_neg = int(target.sum()), int((~target).sum())
    if n_pos == 0 or n_neg == 0:
        return scores.new_tensor(0.5)
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=scores.dtype, device=scores.device)
    # Ties share their average rank.
    unique, inverse = scores.unique(return_inverse=True)
    if len(unique) < len(scores):
        ranks = torch.zeros_like(unique).index_add_(0, inverse, ranks) / torch.bincount(inverse).to(ranks.dtype)
        ranks = ranks[inverse]
    return (ranks[target].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


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


def dai_loss(outputs: Outputs, batch: GroundingBatch, loss_cfg: object) -> dict[str, torch.Tensor]:
    """BCE of every T2V layer's per-clip relevance against the GT-relevant clips (the negative pairs' clips as
    0), diversity of the codebook C; the relevance AUC of each layer (unweighted, for the log)."""
    layers = outputs["dai_relevance_layers"]  # [B, layers, L]
    relevance, chance = dai_relevance_loss(
        layers, batch.relevant_mask, outputs["video_mask"], outputs.get("dai_relevance_layers_neg")
    )
    terms = {
        "loss_dai_relevance": relevance,
        "loss_dai_relevance_chance": chance,
        "loss_dai_diversity": codebook_diversity_loss(outputs["dai_codebook_entries"]),
    }
    if batch.relevant_mask is not None:
        with torch.no_grad():
            target = batch.relevant_mask.float().flatten()
            weight = outputs["video_mask"].float().flatten()
            for i in range(layers.shape[1]):
                terms[f"dai_relevance_auc_l{i}"] = relevance_auc(layers[:, i].flatten(), target, weight)
    return terms


def decoupled_attention(cfg: DAIConfig, ctx: PartContext) -> Callable[[], nn.Module]:
    return partial(DecoupledCrossAttention, ctx.hidden_dim, ctx.nheads, cfg.codebook_size, ctx.dropout, cfg.codebook_values)


def validate(cfg: DAIConfig) -> None:
    check_choice(cfg.context, CONTEXT_MODES, "model.dai.context")


PART = Part(
    name="dai",
    config=DAIConfig,
    build=lambda cfg, ctx: ContextCodebook(
        ctx.hidden_dim, cfg.codebook_size, cfg.context, ctx.nheads, cfg.relevance_to_saliency
    ),
    loss=dai_loss,
    loss_config=DAILossConfig,
    weights={"loss_dai_relevance": "dai_relevance", "loss_dai_diversity": "dai_diversity"},
    module_name="dai_codebook",
    t2v_attention=decoupled_attention,
    negative_pass_outputs=("dai_relevance_layers",),
    validate=validate,
)
