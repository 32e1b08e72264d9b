"""ESTA: event semantic temporal alignment (docs/method.md, "ESTA").

Training only. For each prior event k with clip span [s_k, e_k], a learned query attention-pools the
clips inside the span (z_k; by default the projected clips before any interaction with the query, which the
priors know nothing of; ``source: memory``: the final clip memory); a projection g: d -> Ds maps pooled
events and single clips into the prior text space. Loss = symmetric InfoNCE between g(z_k) and the event embeddings e_k over all events of
the batch (the copies of one event, when a video appears twice in a batch, are not each other's
negatives), plus a clip-to-event term: every valid clip of a video with events classifies itself among its
video's events and a learned "no event" slot: a clip inside events has those events as positives, a clip
outside every event the "no event" slot (so it is pushed away from the events).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from masra.data.batch import GroundingBatch
from masra.model.parts.base import Outputs, Part, PartModule, check_choice
from masra.model.rank_mean import mean_over_ranks


@dataclass
class ESTAConfig:
    enabled: bool = False
    temperature: float = 0.07
    learnable_temperature: bool = True
    # Which clips ESTA aligns with the events: "input", the projected clips before any interaction with the
    # query (the priors are written without the query, docs/method.md), or "memory", the final clip memory.
    source: str = "input"


SOURCES = ("input", "memory")


@dataclass
class ESTALossConfig:
    esta: float = 1.0
    # Weight of the clip-to-event separability term inside the ESTA loss.
    esta_clip_event_weight: float = 1.0


class EventSemanticAlignment(PartModule):
    def __init__(
        self,
        d_model: int,
        semantic_dim: int,
        temperature: float = 0.07,
        learnable_temperature: bool = True,
        source: str = "input",
    ) -> None:
        super().__init__()
        check_choice(source, SOURCES, "model.esta.source")
        self.source = source
        self.pool_query = nn.Parameter(torch.randn(d_model) / math.sqrt(d_model))  # [d]
        self.pool_key = nn.Linear(d_model, d_model)
        self.projection = nn.Sequential(
            nn.Linear(d_model, d_model), nn.ReLU(inplace=True), nn.Linear(d_model, semantic_dim)
        )  # g
        self.null_logit = nn.Parameter(torch.zeros(()))  # logit of the "no event" slot of the clip-to-event term
        log_temperature = torch.tensor(math.log(temperature))
        if learnable_temperature:
            self.log_temperature = nn.Parameter(log_temperature)
        else:
            self.register_buffer("log_temperature", log_temperature)

    def temperature(self) -> torch.Tensor:
        # Clamped so a learnable τ can neither collapse (τ -> 0) nor flatten the logits (τ > 1).
        return self.log_temperature.exp().clamp(0.01, 1.0)

    def forward(
        self, memory: torch.Tensor, video_mask: torch.Tensor, event_spans: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """memory [B, L, d], video_mask [B, L], event_spans [B, M, 2] inclusive clip indices or None ->
        ``esta_event_proj`` [B, M, Ds], ``esta_event_in_video`` [B, M] (span has a valid clip),
        ``esta_clip_proj`` [B, L, Ds], ``esta_span_mask`` [B, M, L], ``esta_clip_mask`` [B, L], ``esta_temperature``
        [] and ``esta_null_logit`` [] (M = 0 without events).
        """
        batch, length, _ = memory.shape
        if event_spans is None:
            event_spans = memory.new_zeros(batch, 0, 2, dtype=torch.long)
        positions = torch.arange(length, device=memory.device)  # [L]
        span_mask = (positions >= event_spans[..., :1]) & (positions <= event_spans[..., 1:])  # [B, M, L]
        span_mask = span_mask & video_mask.bool().unsqueeze(1)
        clip_scores = self.pool_key(memory) @ self.pool_query / math.sqrt(memory.shape[-1])  # [B, L]
        scores = clip_scores.unsqueeze(1).expand(-1, span_mask.shape[1], -1)  # [B, M, L]
        weights = scores.masked_fill(~span_mask, torch.finfo(scores.dtype).min).softmax(-1)
        pooled = weights @ memory  # [B, M, d]; events without a valid clip are masked by the loss
        return {
            "esta_event_proj": self.projection(pooled),
            "esta_event_in_video": span_mask.any(-1).to(memory.dtype),
            "esta_clip_proj": self.projection(memory),
            "esta_span_mask": span_mask,
            "esta_clip_mask": video_mask.bool(),
            "esta_temperature": self.temperature(),
            "esta_null_logit": self.null_logit.clone(),  # not the leaf itself: DDP with find_unused_parameters would mark it ready twice
        }

    # ----- the part's hooks (masra.model.parts.base) -----------------------------------------------------
    def outputs(
        self, memory: torch.Tensor, video_mask: torch.Tensor, batch: GroundingBatch, projected: torch.Tensor
    ) -> Outputs:
        """From the clips of ``source`` (the projected clips or the final memory): in training mode always, even
        without priors (so every parameter is used in every step, as DDP needs); at inference only when the
        batch brings priors."""
        if not self.training and batch.has_priors is None:
            return {}
        return self(projected if self.source == "input" else memory, video_mask, batch.event_spans)

    def diagnostics(self) -> dict[str, torch.Tensor]:
        return {"esta_temperature": self.temperature()}


def esta_loss(
    outputs: dict[str, torch.Tensor],
    event_emb: torch.Tensor | None,
    event_mask: torch.Tensor | None,
    has_priors: torch.Tensor | None,
    clip_event_weight: float = 1.0,
    video_ids: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The two ESTA terms from the outputs of :class:`EventSemanticAlignment` and the batch priors.

    event_emb [B, M, Ds], event_mask [B, M], has_priors [B], video_ids [B] (equal for samples of the same
    video; None = all different). Returns ``esta_nce``, ``esta_clip_event``, ``esta`` = nce +
    clip_event_weight * clip_event, all exactly zero (never NaN) without valid events, and their chance
    levels ``esta_nce_chance`` (log of the number of candidates) and ``esta_clip_event_chance`` (the loss
    of uniform logits).
    """
    event_proj = outputs["esta_event_proj"]  # [B, M, Ds]
    clip_proj = outputs["esta_clip_proj"]  # [B, L, Ds]
    span_mask = outputs["esta_span_mask"]  # [B, M, L]
    tau = outputs["esta_temperature"]
    null_logit = outputs["esta_null_logit"]
    valid = outputs["esta_event_in_video"].bool()  # [B, M]
    if event_mask is None or event_emb is None:
        valid = torch.zeros_like(valid)
    else:
        valid = valid & event_mask.bool()
    if has_priors is not None:
        valid = valid & has_priors.bool().unsqueeze(1)
    inside = (span_mask & valid.unsqueeze(-1)).transpose(1, 2)  # [B, L, M]
    in_event = inside.any(-1)  # [B, L]
    counted = valid.any(1, keepdim=True) & outputs["esta_clip_mask"]  # [B, L]: valid clips of videos with events
    # Normalisers over all DDP ranks, computed on every rank before any early return (collectives).
    event_count, clip_count = mean_over_ranks(valid.sum()), mean_over_ranks(counted.sum())
    if not valid.any():
        zero = event_proj.new_zeros((), dtype=torch.float32)
        return {"esta_nce": zero, "esta_clip_event": zero, "esta": zero,
                "esta_nce_chance": zero, "esta_clip_event_chance": zero}

    batch, n_events = valid.shape
    pred = F.normalize(event_proj.float()[valid], dim=-1)  # [E, Ds]
    text = F.normalize(event_emb.float()[valid], dim=-1)  # [E, Ds]
    logits = pred @ text.t() / tau  # [E, E]
    if video_ids is None:
        video_ids = torch.arange(batch, device=valid.device)
    event_ids = (video_ids.view(-1, 1) * n_events + torch.arange(n_events, device=valid.device))[valid]  # [E]
    same_event = event_ids.view(-1, 1) == event_ids.view(1, -1)
    copies = same_event & ~torch.eye(len(event_ids), dtype=torch.bool, device=valid.device)
    logits = logits.masked_fill(copies, torch.finfo(logits.dtype).min)
    target = torch.arange(logits.shape[0], device=logits.device)
    # In-batch negatives: under DDP they are the events on this rank (docs/training.md).
    nce = 0.5 * (F.cross_entropy(logits, target, reduction="sum")
                 + F.cross_entropy(logits.t(), target, reduction="sum")) / event_count
    nce_chance = (~copies).sum(1).float().log().mean()

    # Clip-to-event: logits over the video's valid events and the "no event" slot.
    clip_unit = F.normalize(clip_proj.float(), dim=-1)  # [B, L, Ds]
    event_unit = F.normalize(event_emb.float(), dim=-1)  # [B, M, Ds]
    clip_logits = clip_unit @ event_unit.transpose(1, 2) / tau  # [B, L, M]
    lowest = torch.finfo(clip_logits.dtype).min
    clip_logits = clip_logits.masked_fill(~valid.unsqueeze(1), lowest)
    clip_logits = torch.cat([clip_logits, null_logit.float().expand(*clip_logits.shape[:2], 1)], dim=-1)  # [B, L, M+1]
    positive = torch.cat([inside, ~in_event.unsqueeze(-1)], dim=-1)  # [B, L, M+1]
    log_all = clip_logits.logsumexp(-1)  # [B, L]
    log_pos = clip_logits.masked_fill(~positive, lowest).logsumexp(-1)  # [B, L]
    clip_event = ((log_all - log_pos) * counted).sum() / clip_count.clamp_min(1)
    candidates = valid.sum(1, keepdim=True).float() + 1.0  # [B, 1]
    local_clips = counted.sum().clamp_min(1)
    clip_chance = ((candidates.log() - positive.sum(-1).float().log()) * counted).sum() / local_clips
    return {"esta_nce": nce, "esta_clip_event": clip_event, "esta": nce + clip_event_weight * clip_event,
            "esta_nce_chance": nce_chance.detach(), "esta_clip_event_chance": clip_chance.detach()}


def video_ids(batch: GroundingBatch, device: torch.device) -> torch.Tensor:
    """[B] long: samples of the same video share an id (their prior events are the same events); a sample
    without a vid is its own video."""
    first_seen: dict[tuple[str, Any], int] = {}
    keys = [("vid", m["vid"]) if m.get("vid") is not None else ("sample", i) for i, m in enumerate(batch.meta)]
    return torch.tensor([first_seen.setdefault(key, len(first_seen)) for key in keys], device=device)


def loss(outputs: Outputs, batch: GroundingBatch, loss_cfg: ESTALossConfig) -> dict[str, torch.Tensor]:
    """Event InfoNCE + clip-to-event term (``loss_esta``), with both parts and the chance level of the sum."""
    if "esta_clip_proj" not in outputs:  # evaluation without priors: nothing to align
        zero = outputs["saliency_scores"].new_zeros((), dtype=torch.float32)
        return {"loss_esta": zero, "esta_nce": zero, "esta_clip_event": zero}
    ids = video_ids(batch, outputs["saliency_scores"].device)
    terms = esta_loss(outputs, batch.event_emb, batch.event_mask, batch.has_priors, loss_cfg.esta_clip_event_weight, ids)
    # The chance level of the weighted sum, so the auxiliary normalisation can treat it like the others.
    chance = terms["esta_nce_chance"] + loss_cfg.esta_clip_event_weight * terms["esta_clip_event_chance"]
    return {"loss_esta": terms["esta"], "loss_esta_chance": chance, **{k: v for k, v in terms.items() if k != "esta"}}


def validate(cfg: ESTAConfig) -> None:
    check_choice(cfg.source, SOURCES, "model.esta.source")


PART = Part(
    name="esta",
    config=ESTAConfig,
    build=lambda cfg, ctx: EventSemanticAlignment(
        ctx.hidden_dim, ctx.semantic_dim, cfg.temperature, cfg.learnable_temperature, cfg.source
    ),
    loss=loss,
    loss_config=ESTALossConfig,
    weights={"loss_esta": "esta"},
    needs_semantic_dim=True,
    validate=validate,
)
