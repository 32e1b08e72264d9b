"""SetCriterion: every training loss of the grounding model, one method per loss, weights applied in one place.

``criterion(outputs, batch)`` returns each unweighted term by name (``loss_span``, ``loss_giou``,
``loss_label``, their decoder-layer copies ``loss_span_0`` ..., ``loss_saliency``) plus ``loss``, the sum of
``weight_dict[name] * term`` over the terms that have a weight.

MASRA losses: each enabled part's ``loss`` (masra.model.parts, docs/method.md), under the part's name, reads
the part outputs of the model and the batch priors; samples without priors are masked inside each loss, and
a batch without priors gives zeros.
Each auxiliary loss comes with its chance level (``<term>_chance``, unweighted), and the model's per-step
``diagnostics`` are passed through as ``diag_<name>``, so the training loop logs them per epoch.

Auxiliary losses (the weighted terms the parts declare) can be ramped in and normalised by their chance
level (``LossConfig.aux_ramp_*``, ``aux_chance_norm``; docs/method.md): the training loop tells the
criterion how far training is (``set_progress``), the criterion scales those weights by the ramp.

Adding a baseline loss: write ``loss_<name>(self, outputs, batch, indices) -> dict[str, Tensor]``, register it
in ``get_loss``, put ``<name>`` in ``losses`` and its term names in ``weight_dict``. A MASRA part's loss comes
with its declaration (masra.model.parts.base.Part).
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
from masra.model.matcher import HungarianMatcher, pad_targets
from masra.model.parts.base import Part
from masra.model.rank_mean import mean_over_ranks
from masra.model.span_ops import generalized_temporal_iou, span_cxw_to_xx

Indices = list[tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[dict[str, Any], GroundingBatch, "Indices | None"], dict[str, torch.Tensor]]

# Losses computed on every decoder layer (from Hungarian matching); all others use the final outputs only.
# The baseline's are SET_LOSSES; Moment-DETR's optional contrastive alignment is one too.
SET_LOSSES = ("spans", "labels")
LAYER_LOSSES = (*SET_LOSSES, "contrastive_align")
FOREGROUND, BACKGROUND = 0, 1
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
        negative_pair: float = 1.0,
        contrastive_temperature: float = 0.07,
        aux_loss: bool = True,
        use_matcher: bool = True,
        parts: list[Part] | None = None,
        loss_cfg: Any = None,
        aux_ramp: AuxRamp | None = None,
        aux_chance_norm: bool = False,
    ) -> None:
        """use_matcher False = saliency-only training (TVSum / YouTube Highlights): no set losses at all.
        ``negative_pair`` weighs the saliency losses' negative-pair term (0: the term is not computed).
        ``parts``: the enabled MASRA parts whose losses run (after ``losses``, in order), with their settings
        from ``loss_cfg`` (the LossConfig). ``aux_ramp`` scales the parts' weighted terms over training;
        ``aux_chance_norm`` puts each with a chance level ``<term>_chance`` into the total as (L − c) / c."""
        super().__init__()
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.losses = list(losses)
        self.saliency_margin = saliency_margin
        self.rank_temperature = rank_temperature
        self.negative_pair = negative_pair
        self.contrastive_temperature = contrastive_temperature
        self.aux_loss = aux_loss
        self.use_matcher = use_matcher
        self.parts = list(parts or [])
        self.loss_cfg = loss_cfg
        self.auxiliary_terms = {term for part in self.parts for term in part.weights}
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

    def loss_contrastive_align(
        self, outputs: dict[str, Any], batch: GroundingBatch, indices: Indices | None
    ) -> dict[str, torch.Tensor]:
        """Moment-DETR's contrastive alignment: a query's logit is the sum over the token positions of the cosine
        of its projection with each token's (padded positions included, as Moment-DETR sums them) / τ; InfoNCE of
        the matched queries against all queries of the sample, averaged over samples."""
        queries = outputs["proj_queries"].float()  # [B, Q, h], L2-normalised
        tokens = outputs["proj_txt_mem"].float()  # [B, N, h], L2-normalised
        logits = torch.einsum("bqh,bnh->bqn", queries, tokens).sum(2) / self.contrastive_temperature  # [B, Q]
        positive = torch.zeros_like(logits, dtype=torch.bool)
        positive[_prediction_index(indices)] = True
        positive_term = logits.masked_fill(~positive, 0).sum(1)  # [B]
        loss = -positive_term / positive.sum(1) + logits.logsumexp(1)  # [B]
        return {"loss_contrastive_align": loss.mean()}

    # ----- saliency ------------------------------------------------------------------------------------
    def loss_saliency(self, outputs: dict[str, Any], batch: GroundingBatch, indices: Indices | None) -> dict[str, torch.Tensor]:
        """QD-DETR's saliency loss: margin hinge + rank-contrastive + ``negative_pair`` × the negative-pair term."""
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
            if self.negative_pair:
                loss = loss + self.negative_pair * (F.softplus(neg_scores) * mask).sum(1).mean()
        return {"loss_saliency": loss}

    def loss_saliency_hinge(
        self, outputs: dict[str, Any], batch: GroundingBatch, indices: Indices | None
    ) -> dict[str, torch.Tensor]:
        """Moment-DETR's saliency loss: the margin hinge alone."""
        scores = outputs["saliency_scores"].float()  # [B, L]
        if batch.saliency_pos_idx is None or batch.saliency_neg_idx is None:
            return {"loss_saliency": scores.new_zeros(())}
        return {"loss_saliency": self._saliency_hinge(scores, batch.saliency_pos_idx, batch.saliency_neg_idx)}

    def loss_saliency_cg_detr(
        self, outputs: dict[str, Any], batch: GroundingBatch, indices: Indices | None
    ) -> dict[str, torch.Tensor]:
        """CG-DETR's saliency loss: QD-DETR's terms on the saliency scores, plus ``saliency_attention`` times the
        same terms on the T2V attention's text mass a_i (its negative-pair term −log(1 − a_i)) and the BCE of
        a_i with the moment mask; both negative-pair terms weighed by ``negative_pair`` (0 on YouTube Highlights,
        where CG-DETR multiplies them by 0). Only the real negative pairs (``negative_rows``) join the ranking;
        the samples paired with a window of their own video (two or more of them) are ranked alone, on the
        scores only (CG-DETR adds that term of the attention to a sum it has already used)."""
        scores = outputs["saliency_scores"].float()  # [B, L]
        if batch.saliency_pos_idx is None or batch.saliency_neg_idx is None or batch.saliency_all_labels is None:
            return {"loss_saliency": scores.new_zeros(())}
        attention = outputs["t2v_text_attention"].float()  # [B, L], in [0, 1]
        labels = batch.saliency_all_labels.float()
        rows = outputs.get("negative_rows")
        loss = self._cg_detr_saliency(scores, outputs.get("saliency_scores_neg"), rows, labels, outputs["video_mask"],
                                      batch, F.softplus, rank_false_negatives=True)  # softplus = −log(1 − σ(s))
        attention_loss = self._cg_detr_saliency(
            attention, outputs.get("t2v_text_attention_neg"), rows, labels, outputs["video_mask"], batch,
            lambda a: -torch.log(1.0 - a), rank_false_negatives=False)
        attention_loss = attention_loss + F.binary_cross_entropy(attention, labels.clamp(0, 1))
        return {"loss_saliency": loss + attention_loss * self.loss_cfg.saliency_attention}

    def _cg_detr_saliency(
        self,
        scores: torch.Tensor,
        neg_scores: torch.Tensor | None,
        rows: torch.Tensor | None,
        labels: torch.Tensor,
        video_mask: torch.Tensor,
        batch: GroundingBatch,
        negative_pair_loss: Callable[[torch.Tensor], torch.Tensor],
        rank_false_negatives: bool,
    ) -> torch.Tensor:
        """Hinge + rank-contrastive (with the negative pairs' clips as label 0 where there are any) +
        ``self.negative_pair`` × the negative-pair term; scores [B, L], neg_scores [R, L] for the R true
        ``rows`` [B]."""
        mask = video_mask.float()
        loss = self._saliency_hinge(scores, batch.saliency_pos_idx, batch.saliency_neg_idx)
        if neg_scores is None:
            return loss + self._rank_contrastive(scores, labels, mask)
        neg_scores = neg_scores.float()
        real = mask[rows]
        loss = loss + self._rank_contrastive(torch.cat([scores[rows], neg_scores], dim=1),
                                             torch.cat([labels[rows], torch.zeros_like(labels[rows])], dim=1),
                                             real.repeat(1, 2))
        if self.negative_pair:
            loss = loss + self.negative_pair * (negative_pair_loss(neg_scores) * real).sum(1).mean()
        # CG-DETR ranks a lone false-negative sample over a tensor with an extra dimension, where each softmax
        # spans one entry: its term is log(1 + 1e-6) ≈ 1e-6 per rank, left out here.
        if rank_false_negatives and (~rows).sum() > 1:
            loss = loss + self._rank_contrastive(scores[~rows], labels[~rows], mask[~rows])
        return loss

    # ----- CG-DETR's alignment losses (model.backbone cg_detr, training outputs) ------------------------------
    def loss_moment_sentence(
        self, outputs: dict[str, Any], batch: GroundingBatch, indices: Indices | None
    ) -> dict[str, torch.Tensor]:
        """The moment token matches its own sentence token against the other samples' and the non-moment tokens
        (cross-entropy over cosines); the dummies' sentence token is pushed to another sample's moment (CG-DETR's
        labels: the first column that is not the sample's own); and the moment token classifies the clips inside
        the moment (BCE of σ(<token, frame>), averaged over all B·L entries with the padded ones zeroed)."""
        if "moment_token" not in outputs:
            return {"loss_ms_align": outputs["saliency_scores"].new_zeros((), dtype=torch.float32)}
        moment = F.normalize(outputs["moment_token"].float(), dim=1)  # [B, d]
        non_moment = F.normalize(outputs["non_moment_token"].float(), dim=1)
        sentence = F.normalize(outputs["sentence_token"].float(), dim=1)
        dummy_sentence = F.normalize(outputs["sentence_dummy_token"].float(), dim=1)
        own = torch.arange(len(moment), device=moment.device)
        loss = F.cross_entropy(torch.cat([moment @ sentence.T, non_moment @ sentence.T], dim=1), own)
        loss = loss + F.cross_entropy(torch.cat([moment @ dummy_sentence.T, non_moment @ dummy_sentence.T], dim=1),
                                      (own == 0).long())
        logits = torch.einsum("bd,bld->bl", outputs["moment_token"].float(), outputs["moment_frames"].float())
        bce = F.binary_cross_entropy(logits.sigmoid(), outputs["moment_mask"].float(), reduction="none")
        return {"loss_ms_align": loss + (bce * outputs["video_mask"].float()).mean()}

    def loss_distill(self, outputs: dict[str, Any], batch: GroundingBatch, indices: Indices | None) -> dict[str, torch.Tensor]:
        """KL(softmax(moment-clip · word similarity) ‖ T2V attention) over [dummies ; tokens], per clip inside
        a moment (mean over the keys, then over those clips); the similarity is the teacher (no gradient)."""
        if "moment_text_similarity" not in outputs:
            return {"loss_distill": outputs["saliency_scores"].new_zeros((), dtype=torch.float32)}
        attention = outputs["t2v_attention"].float()  # [B, L, nd+N]
        teacher = outputs["moment_text_similarity"].float().softmax(dim=-1).detach()
        kl = F.kl_div(torch.log(attention + 1e-6), teacher, reduction="none").mean(-1)  # [B, L]
        moment = outputs["moment_mask"].float()
        return {"loss_distill": (kl * moment).sum() / moment.sum().clamp_min(1.0)}

    def loss_orthogonal_dummy(
        self, outputs: dict[str, Any], batch: GroundingBatch, indices: Indices | None
    ) -> dict[str, torch.Tensor]:
        """Mean |cos| between different dummies of a sample (none with one dummy) plus between different
        prototypes of the saliency token (diagonal zeroed, mean over all pairs; one side detached, as CG-DETR)."""

        def off_diagonal_cosine(x: torch.Tensor) -> torch.Tensor:  # [..., n, d] -> mean |cos| over i != j
            x = x / x.norm(dim=-1, keepdim=True)
            similarity = x @ x.detach().transpose(-1, -2)
            eye = torch.eye(x.shape[-2], dtype=torch.bool, device=x.device)
            return similarity.masked_fill(eye, 0).abs().mean()

        dummies = outputs["dummy_tokens"].float()  # [B, nd, d]
        loss = off_diagonal_cosine(dummies) if dummies.shape[1] > 1 else dummies.new_zeros(())
        return {"loss_orthogonal_dummy": loss + off_diagonal_cosine(outputs["prompt_tokens"].float())}

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

    # ----- plumbing -------------------------------------------------------------------------------------
    def get_loss(
        self, name: str, outputs: dict[str, Any], batch: GroundingBatch, indices: Indices | None
    ) -> dict[str, torch.Tensor]:
        loss_map: dict[str, LossFn] = {
            "spans": self.loss_spans,
            "labels": self.loss_labels,
            "saliency": self.loss_saliency,
            "saliency_hinge": self.loss_saliency_hinge,
            "contrastive_align": self.loss_contrastive_align,
            "saliency_cg_detr": self.loss_saliency_cg_detr,
            "moment_sentence": self.loss_moment_sentence,
            "distill": self.loss_distill,
            "orthogonal_dummy": self.loss_orthogonal_dummy,
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
            if key in self.auxiliary_terms:
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
            if name in LAYER_LOSSES and not self.use_matcher:
                continue
            terms.update(self.get_loss(name, outputs, batch, indices))
        for part in self.parts:
            terms.update(part.loss(outputs, batch, self.loss_cfg))
        if self.use_matcher and self.aux_loss:
            for i, (aux, aux_indices) in enumerate(zip(outputs.get("aux_outputs", []), layer_indices[1:])):
                for name in self.losses:
                    if name in LAYER_LOSSES:
                        layer_terms = self.get_loss(name, aux, batch, aux_indices)
                        terms.update({f"{key}_{i}": value for key, value in layer_terms.items()})
        total = self.weighted_total(terms)
        terms["loss"] = total if total is not None else outputs["saliency_scores"].float().sum() * 0
        if any(key in self.auxiliary_terms for key in terms):
            terms["aux_ramp"] = terms["loss"].new_tensor(self.aux_ramp(self.progress))
        terms.update({f"diag_{name}": value for name, value in outputs.get("diagnostics", {}).items()})
        return terms


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
