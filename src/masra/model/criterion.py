"""SetCriterion: every training loss of the grounding model, one method per loss, weights applied in one place.

``criterion(outputs, batch)`` returns each unweighted term by name (``loss_span``, ``loss_giou``,
``loss_label``, their decoder-layer copies ``loss_span_0`` ..., ``loss_saliency``) plus ``loss``, the sum of
``weight_dict[name] * term`` over the terms that have a weight.

MASRA losses (``dai``, ``sge``, ``esta``, ``lrca``; docs/method.md) read the part outputs of the model and the
batch priors; samples without priors are masked inside each loss, and a batch without priors gives zeros.
Each auxiliary loss comes with its chance level (``<term>_chance``, unweighted), and the model's per-step
``diagnostics`` are passed through as ``diag_<name>``, so the training loop logs them per epoch.

Auxiliary losses (the MASRA parts', ``AUXILIARY_PREFIXES``) can be ramped in and normalised by their chance
level (``LossConfig.aux_ramp_*``, ``aux_chance_norm``; docs/method.md): the training loop tells the
criterion how far training is (``set_progress``), the criterion scales those weights by the ramp.

Adding a loss: write ``loss_<name>(self, outputs, batch, indices) -> dict[str, Tensor]``, register it in
``get_loss``, put ``<name>`` in ``losses`` and its term names in ``weight_dict``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from masra.data.batch import GroundingBatch
from masra.errors import MasraError
from masra.model.dai import codebook_diversity_loss, dai_relevance_loss, relevance_auc
from masra.model.esta import esta_loss
from masra.model.lrca import lrca_loss
from masra.model.matcher import HungarianMatcher, pad_targets
from masra.model.rank_mean import mean_over_ranks
from masra.model.sge import sge_caption_loss
from masra.model.span_ops import generalized_temporal_iou, span_cxw_to_xx

Indices = list[tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[dict[str, Any], GroundingBatch, "Indices | None"], dict[str, torch.Tensor]]

# Losses computed on every decoder layer (from Hungarian matching); all others use the final outputs only.
SET_LOSSES = ("spans", "labels")
FOREGROUND, BACKGROUND = 0, 1
# Weighted terms of the MASRA parts' auxiliary losses (ramped in and chance-normalised when configured).
AUXILIARY_PREFIXES = ("loss_dai_", "loss_sge_", "loss_esta", "loss_lrca")
CHANCE_SUFFIX = "_chance"


@dataclass(frozen=True)
class AuxRamp:
    """The auxiliary losses' weight multiplier over training: 0 until ``start`` epochs, then linear to 1 over
    ``epochs`` epochs (``epochs`` 0: a step to 1 at ``start``; both 0: always 1)."""

    start: float = 0.0
    epochs: float = 0.0

    def __call__(self, progress: float | None) -> float:
        """``progress``: epochs done (fractional); None (no training position known) = full weight."""
        if progress is None or progress >= self.start + self.epochs:
            return 1.0
        if progress < self.start:
            return 0.0
        return (progress - self.start) / self.epochs


def is_auxiliary(name: str) -> bool:
    return name.startswith(AUXILIARY_PREFIXES) and not name.endswith(CHANCE_SUFFIX)


def relative_to_chance(loss: torch.Tensor, chance: torch.Tensor | None) -> torch.Tensor:
    """(L − c) / c for a positive chance level c (0 at chance, −1 when perfect); L itself without one
    (no chance level, or c = 0 for a batch where the loss had nothing to score)."""
    if chance is None:
        return loss
    chance = chance.detach().to(loss.dtype)
    return torch.where(chance > 0, (loss - chance) / chance.clamp_min(1e-12), loss)


class SetCriterion(nn.Module):
    def __init__(
        self,
        matcher: HungarianMatcher,
        weight_dict: dict[str, float],
        losses: list[str],
        eos_coef: float = 0.1,
        saliency_margin: float = 0.2,
        rank_temperature: float = 0.5,
        aux_loss: bool = True,
        use_matcher: bool = True,
        esta_clip_event_weight: float = 1.0,
        lrca_band: int = 16,
        lrca_text_temperature: float = 0.1,
        sge_band: int = 16,
        sge_temperature: float = 0.1,
        aux_ramp: AuxRamp | None = None,
        aux_chance_norm: bool = False,
    ) -> None:
        """use_matcher False = saliency-only training (TVSum / YouTube Highlights): no set losses at all.
        ``aux_ramp`` scales the auxiliary weights over training; ``aux_chance_norm`` puts each auxiliary loss
        with a chance level ``<term>_chance`` into the total as (L − c) / c."""
        super().__init__()
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.losses = list(losses)
        self.saliency_margin = saliency_margin
        self.rank_temperature = rank_temperature
        self.aux_loss = aux_loss
        self.use_matcher = use_matcher
        self.esta_clip_event_weight = esta_clip_event_weight
        self.lrca_band = lrca_band
        self.lrca_text_temperature = lrca_text_temperature
        self.sge_band = sge_band
        self.sge_temperature = sge_temperature
        self.aux_ramp = aux_ramp or AuxRamp()
        self.aux_chance_norm = aux_chance_norm
        self.progress: float | None = None  # epochs of training done (fractional); set by the training loop
        class_weight = torch.ones(2)
        class_weight[BACKGROUND] = eos_coef
        self.register_buffer("class_weight", class_weight)

    # ----- set losses ----------------------------------------------------------------------------------
    def loss_spans(self, outputs: dict[str, Any], batch: GroundingBatch, indices: Indices | None) -> dict[str, torch.Tensor]:
        """L1 on matched (center, width) and 1 − GIoU on matched (start, end), each a mean over matches.

        Under DDP the mean is over the matches of all ranks (``mean_over_ranks``), as in one process."""
        batch_idx, query_idx = _prediction_index(indices)
        pred = outputs["pred_spans"].float()[batch_idx, query_idx]  # [M, 2]
        target_idx = torch.cat([j for _, j in indices]).to(pred.device)
        tgt = pad_targets(_span_targets(batch)).to(pred)[batch_idx.to(pred.device), target_idx]  # [M, 2]
        matches = mean_over_ranks(torch.tensor(float(len(pred)), device=pred.device))  # before any early return
        if len(pred) == 0:
            zero = outputs["pred_spans"].new_zeros((), dtype=torch.float32)
            return {"loss_span": zero, "loss_giou": zero}
        loss_span = F.l1_loss(pred, tgt, reduction="none").sum() / (2 * matches)
        giou = generalized_temporal_iou(span_cxw_to_xx(pred), span_cxw_to_xx(tgt)).diagonal()
        return {"loss_span": loss_span, "loss_giou": (1 - giou).sum() / matches}

    def loss_labels(self, outputs: dict[str, Any], batch: GroundingBatch, indices: Indices | None) -> dict[str, torch.Tensor]:
        """Foreground/background cross-entropy over all B·Q queries, class weights [1, eos_coef],
        averaged by B·Q (not by the weight sum, as in Moment-DETR / QD-DETR)."""
        logits = outputs["pred_logits"].float()  # [B, Q, 2]
        target = torch.full(logits.shape[:2], BACKGROUND, dtype=torch.int64, device=logits.device)
        target[_prediction_index(indices)] = FOREGROUND
        loss = F.cross_entropy(logits.transpose(1, 2), target, self.class_weight, reduction="none")  # [B, Q]
        return {"loss_label": loss.mean()}

    # ----- saliency ------------------------------------------------------------------------------------
    def loss_saliency(self, outputs: dict[str, Any], batch: GroundingBatch, indices: Indices | None) -> dict[str, torch.Tensor]:
        """QD-DETR's saliency loss: margin hinge + rank-contrastive + negative-pair term, summed."""
        scores = outputs["saliency_scores"].float()  # [B, L]
        if batch.saliency_pos_idx is None or batch.saliency_neg_idx is None or batch.saliency_all_labels is None:
            return {"loss_saliency": scores.new_zeros(())}
        mask = outputs["video_mask"].float()  # [B, L]
        labels = batch.saliency_all_labels.float()  # [B, L]
        neg_scores = outputs.get("saliency_scores_neg")
        loss = self._saliency_hinge(scores, batch.saliency_pos_idx, batch.saliency_neg_idx)
        if neg_scores is None:
            loss = loss + self._rank_contrastive(scores, labels, mask)
        else:
            neg_scores = neg_scores.float()
            # The mismatched query's clips join the ranking as label-0 entries.
            loss = loss + self._rank_contrastive(
                torch.cat([scores, neg_scores], dim=1),
                torch.cat([labels, torch.zeros_like(labels)], dim=1),
                mask.repeat(1, 2),
            )
            # −log(1 − σ(s_neg)) summed over valid clips, averaged over samples; softplus is the stable form.
            loss = loss + (F.softplus(neg_scores) * mask).sum(1).mean()
        return {"loss_saliency": loss}

    def _saliency_hinge(self, scores: torch.Tensor, pos_idx: torch.Tensor, neg_idx: torch.Tensor) -> torch.Tensor:
        """2 · mean over (sample, pair) of max(0, margin + s_neg − s_pos)."""
        pos = scores.gather(1, pos_idx.to(scores.device))  # [B, P]
        neg = scores.gather(1, neg_idx.to(scores.device))  # [B, P]
        return (self.saliency_margin + neg - pos).clamp(min=0).mean() * 2

    def _rank_contrastive(self, scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """For each rank r = 1..11, softmax(s / τ) over a sample's clips and −mean log p over clips with
        label ≥ r; averaged over samples that have such clips, summed over r, divided by 12 (as QD-DETR)."""
        scores = mask * scores + (1 - mask) * -1e3  # padding never wins the softmax
        logits = scores / self.rank_temperature
        logits = logits - logits.max(dim=1, keepdim=True).values
        log_prob = logits - torch.log(logits.exp().sum(1, keepdim=True) + 1e-6)  # [B, S], QD-DETR's exact form
        ranks = torch.arange(1, 12, device=labels.device, dtype=labels.dtype)[:, None, None]  # [11, 1, 1]
        positive = (labels[None] >= ranks).to(log_prob.dtype)  # [11, B, S]
        count = positive.sum(-1)  # [11, B]
        has_positive = (count > 0).to(log_prob.dtype)
        mean_log_prob = (positive * log_prob * mask).sum(-1) / (count + 1e-6)  # [11, B]
        # A rank without any positive clip in the batch contributes exactly 0 (QD-DETR skips it).
        total = (-mean_log_prob * has_positive).mean(-1).sum()
        return total / 12

    # ----- MASRA ---------------------------------------------------------------------------------------
    def loss_dai(self, outputs: dict[str, Any], batch: GroundingBatch, indices: Indices | None) -> dict[str, torch.Tensor]:
        """DAI: BCE of every T2V layer's per-clip relevance against the GT-relevant clips (the negative pairs'
        clips as 0), diversity of the codebook C; the relevance AUC of each layer (unweighted, for the log)."""
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

    def loss_sge(self, outputs: dict[str, Any], batch: GroundingBatch, indices: Indices | None) -> dict[str, torch.Tensor]:
        """SGE: each clip picks out its own caption among its neighbours' (soft-target cross-entropy), with the
        retrieval accuracy next to its chance level for the log."""
        return sge_caption_loss(
            outputs["sge_semantics"], batch.caption_emb, batch.caption_mask, outputs["video_mask"], batch.has_priors,
            band=self.sge_band, temperature=self.sge_temperature,
        )

    def loss_esta(self, outputs: dict[str, Any], batch: GroundingBatch, indices: Indices | None) -> dict[str, torch.Tensor]:
        """ESTA: event InfoNCE + clip-to-event term (``loss_esta``), with both parts for logging."""
        if "esta_clip_proj" not in outputs:  # evaluation without priors: nothing to align
            zero = outputs["saliency_scores"].new_zeros((), dtype=torch.float32)
            return {"loss_esta": zero, "esta_nce": zero, "esta_clip_event": zero}
        video_ids = _video_ids(batch, outputs["saliency_scores"].device)
        terms = esta_loss(
            outputs, batch.event_emb, batch.event_mask, batch.has_priors, self.esta_clip_event_weight, video_ids
        )
        # The chance level of the weighted sum, so the auxiliary normalisation can treat it like the others.
        chance = terms["esta_nce_chance"] + self.esta_clip_event_weight * terms["esta_clip_event_chance"]
        return {"loss_esta": terms["esta"], "loss_esta" + CHANCE_SUFFIX: chance,
                **{k: v for k, v in terms.items() if k != "esta"}}

    def loss_lrca(self, outputs: dict[str, Any], batch: GroundingBatch, indices: Indices | None) -> dict[str, torch.Tensor]:
        """LRCA: banded KL between caption relations and model relations."""
        if "lrca_video_proj" not in outputs:
            return {"loss_lrca": outputs["saliency_scores"].new_zeros((), dtype=torch.float32)}
        loss, chance = lrca_loss(
            outputs["lrca_video_proj"],
            outputs["lrca_video_temperature"],
            batch.caption_emb,
            batch.caption_mask,
            outputs["video_mask"],
            batch.has_priors,
            band=self.lrca_band,
            text_temperature=self.lrca_text_temperature,
        )
        return {"loss_lrca": loss, "loss_lrca_chance": chance}

    # ----- plumbing -------------------------------------------------------------------------------------
    def get_loss(
        self, name: str, outputs: dict[str, Any], batch: GroundingBatch, indices: Indices | None
    ) -> dict[str, torch.Tensor]:
        loss_map: dict[str, LossFn] = {
            "spans": self.loss_spans,
            "labels": self.loss_labels,
            "saliency": self.loss_saliency,
            "dai": self.loss_dai,
            "sge": self.loss_sge,
            "esta": self.loss_esta,
            "lrca": self.loss_lrca,
        }
        if name not in loss_map:
            raise MasraError(f"unknown loss {name!r}; known: {', '.join(loss_map)}", field="loss")
        return loss_map[name](outputs, batch, indices)

    def set_progress(self, epochs_done: float) -> None:
        """Where training stands (epochs done, fractional), for the auxiliary ramp; called before each step."""
        self.progress = epochs_done

    def weighted_total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Σ weight · term over the weighted terms, the auxiliary ones ramped (and chance-normalised)."""
        ramp = self.aux_ramp(self.progress)
        weighted = []
        for key, value in terms.items():
            if key not in self.weight_dict:
                continue
            weight = self.weight_dict[key]
            if is_auxiliary(key):
                weight = weight * ramp
                if self.aux_chance_norm:
                    value = relative_to_chance(value, terms.get(key + CHANCE_SUFFIX))
            weighted.append(weight * value)
        return torch.stack(weighted).sum() if weighted else None

    def match(self, outputs: dict[str, Any], batch: GroundingBatch) -> list[Indices]:
        """Hungarian matching of the final layer and (with aux_loss) every earlier one, in one batched call:
        the final layer's indices first, then those of ``aux_outputs`` in order."""
        layers = [outputs] + (list(outputs.get("aux_outputs", [])) if self.aux_loss else [])
        logits = torch.stack([layer["pred_logits"] for layer in layers])  # [l, B, Q, 2]
        spans = torch.stack([layer["pred_spans"] for layer in layers])  # [l, B, Q, 2]
        return self.matcher.match_layers(logits, spans, _span_targets(batch))

    def forward(self, outputs: dict[str, Any], batch: GroundingBatch) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        layer_indices = self.match(outputs, batch) if self.use_matcher else [None]
        indices = layer_indices[0]
        for name in self.losses:
            if name in SET_LOSSES and not self.use_matcher:
                continue
            terms.update(self.get_loss(name, outputs, batch, indices))
        if self.use_matcher and self.aux_loss:
            for i, (aux, aux_indices) in enumerate(zip(outputs.get("aux_outputs", []), layer_indices[1:])):
                for name in self.losses:
                    if name in SET_LOSSES:
                        layer_terms = self.get_loss(name, aux, batch, aux_indices)
                        terms.update({f"{key}_{i}": value for key, value in layer_terms.items()})
        total = self.weighted_total(terms)
        terms["loss"] = total if total is not None else outputs["saliency_scores"].float().sum() * 0
        if any(is_auxiliary(key) for key in terms):
            terms["aux_ramp"] = terms["loss"].new_tensor(self.aux_ramp(self.progress))
        terms.update({f"diag_{name}": value for name, value in outputs.get("diagnostics", {}).items()})
        return terms


def _video_ids(batch: GroundingBatch, device: torch.device) -> torch.Tensor:
    """[B] long: samples of the same video share an id (their prior events are the same events); a sample
    without a vid is its own video."""
    first_seen: dict[tuple[str, Any], int] = {}
    keys = [("vid", m["vid"]) if m.get("vid") is not None else ("sample", i) for i, m in enumerate(batch.meta)]
    return torch.tensor([first_seen.setdefault(key, len(first_seen)) for key in keys], device=device)


def _span_targets(batch: GroundingBatch) -> list[torch.Tensor]:
    if batch.span_targets is None:
        raise MasraError("the batch has no span_targets; moment losses need training targets", field="span_targets")
    return batch.span_targets


def _prediction_index(indices: Indices | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Matched (batch index, query index) pairs flattened over the batch."""
    if indices is None:
        raise MasraError("set losses need Hungarian matching (loss.use_matcher is false)", field="loss.use_matcher")
    query_idx = torch.cat([src for src, _ in indices])
    batch_idx = torch.arange(len(indices)).repeat_interleave(torch.tensor([len(src) for src, _ in indices]))
    return batch_idx, query_idx
