import math

import torch
import torch.nn.functional as F

from masra.config import LossConfig
from masra.data.batch import GroundingBatch
from masra.model.build import build_criterion


def _batch(span_targets, labels=None, pos=None, neg=None, length=6) -> GroundingBatch:
    batch = len(span_targets)
    return GroundingBatch(
        video_feats=torch.zeros(batch, length, 4),
        video_mask=torch.ones(batch, length),
        query_feats=torch.zeros(batch, 2, 4),
        query_mask=torch.ones(batch, 2),
        meta=[{}] * batch,
        span_targets=span_targets,
        saliency_pos_idx=pos,
        saliency_neg_idx=neg,
        saliency_all_labels=labels,
    )


def _outputs(spans, logits, saliency=None, saliency_neg=None, mask=None):
    batch, _, _ = spans.shape
    saliency = torch.zeros(batch, 6) if saliency is None else saliency
    out = {
        "pred_spans": spans,
        "pred_logits": logits,
        "saliency_scores": saliency,
        "video_mask": torch.ones_like(saliency) if mask is None else mask,
        "aux_outputs": [{"pred_spans": spans.clone(), "pred_logits": logits.clone()}],
    }
    if saliency_neg is not None:
        out["saliency_scores_neg"] = saliency_neg
    return out


def test_perfect_spans_give_zero_span_and_giou_losses():
    targets = [torch.tensor([[0.3, 0.2]]), torch.tensor([[0.6, 0.4], [0.2, 0.1]])]
    spans = torch.tensor([[[0.8, 0.1], [0.3, 0.2], [0.5, 0.5]], [[0.2, 0.1], [0.9, 0.05], [0.6, 0.4]]])
    criterion = build_criterion(LossConfig(), dec_layers=2)
    terms = criterion(_outputs(spans, torch.zeros(2, 3, 2)), _batch(targets))
    for name in ("loss_span", "loss_giou", "loss_span_0", "loss_giou_0"):
        assert terms[name].item() < 1e-6, name


def test_span_losses_on_a_known_offset():
    targets = [torch.tensor([[0.5, 0.2]])]
    spans = torch.tensor([[[0.6, 0.2]]])  # shifted by 0.1: [0.5, 0.7] vs [0.4, 0.6]
    terms = build_criterion(LossConfig(), dec_layers=1)(_outputs(spans, torch.zeros(1, 1, 2)), _batch(targets))
    assert math.isclose(terms["loss_span"].item(), 0.05, rel_tol=1e-5)  # mean of |0.1| and |0|
    giou = 0.1 / 0.3  # inter .1, union .3, hull .3
    assert math.isclose(terms["loss_giou"].item(), 1 - giou, rel_tol=1e-5)


def test_label_loss_is_weighted_ce_averaged_over_all_queries():
    targets = [torch.tensor([[0.5, 0.2]])]
    spans = torch.tensor([[[0.5, 0.2], [0.1, 0.05], [0.9, 0.05]]])  # query 0 matches
    logits = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]]])
    terms = build_criterion(LossConfig(), dec_layers=1)(_outputs(spans, logits), _batch(targets))
    log_p = F.log_softmax(logits[0], -1)
    expected = (-log_p[0, 0] * 1.0 - log_p[1, 1] * 0.1 - log_p[2, 1] * 0.1) / 3  # divided by B*Q, not weights
    assert math.isclose(terms["loss_label"].item(), expected.item(), rel_tol=1e-5)


def test_total_is_the_weighted_sum_of_the_terms():
    cfg = LossConfig()
    criterion = build_criterion(cfg, dec_layers=2)
    spans = torch.rand(2, 3, 2) * 0.3 + 0.2
    labels = torch.tensor([[0, 3, 6, 0, 0, 0], [0, 0, 0, 12, 2, 0.0]])
    batch = _batch(
        [torch.tensor([[0.3, 0.2]]), torch.tensor([[0.6, 0.3]])],
        labels,
        torch.tensor([[2, 1], [3, 4]]),
        torch.tensor([[0, 5], [0, 1]]),
    )
    terms = criterion(_outputs(spans, torch.randn(2, 3, 2), torch.randn(2, 6), torch.randn(2, 6)), batch)
    weights = {"loss_span": cfg.span, "loss_giou": cfg.giou, "loss_label": cfg.label, "loss_saliency": cfg.saliency}
    expected = sum(w * terms[k] for k, w in weights.items()) + sum(
        w * terms[f"{k}_0"] for k, w in weights.items() if k != "loss_saliency"
    )
    assert "loss_saliency_0" not in terms
    assert torch.isclose(terms["loss"], expected)
    assert all(torch.isfinite(v) for v in terms.values())


def _rank_contrastive_by_loops(scores, labels, mask, tau=0.5):
    """The rank-contrastive term written per sample and per rank with Python loops."""
    batch, length = scores.shape
    total = 0.0
    for rank in range(1, 12):
        if not (labels >= rank).any():
            continue
        per_sample = []
        for b in range(batch):
            valid = [j for j in range(length) if mask[b, j] > 0]
            positives = [j for j in valid if labels[b, j] >= rank]
            if not positives:
                per_sample.append(0.0)
                continue
            log_norm = math.log(sum(math.exp(scores[b, j].item() / tau) for j in valid))
            per_sample.append(-sum(scores[b, j].item() / tau - log_norm for j in positives) / len(positives))
        total += sum(per_sample) / batch
    return total / 12


def test_saliency_loss_matches_hinge_rank_and_negative_terms():
    cfg = LossConfig()
    criterion = build_criterion(cfg, dec_layers=1)
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 6, generator=gen)
    neg_scores = torch.randn(2, 6, generator=gen)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0.0]])
    labels = torch.tensor([[0, 3, 6, 0, 0, 0], [0, 12, 2, 0, 0, 0.0]])
    pos, neg = torch.tensor([[2, 1], [1, 2]]), torch.tensor([[0, 5], [0, 3]])
    batch = _batch([torch.tensor([[0.3, 0.2]])] * 2, labels, pos, neg)
    outputs = _outputs(torch.rand(2, 2, 2), torch.zeros(2, 2, 2), scores, neg_scores, mask)
    got = criterion.loss_saliency(outputs, batch, None)["loss_saliency"].item()

    hinge = sum(
        max(0.0, cfg.saliency_margin + scores[b, neg[b, p]].item() - scores[b, pos[b, p]].item())
        for b in range(2)
        for p in range(2)
    ) / 4 * 2
    rank = _rank_contrastive_by_loops(
        torch.cat([scores, neg_scores], 1), torch.cat([labels, torch.zeros_like(labels)], 1), mask.repeat(1, 2)
    )
    negative = sum(
        -math.log(1 - torch.sigmoid(neg_scores[b, j]).item()) for b in range(2) for j in range(6) if mask[b, j]
    ) / 2
    assert math.isclose(got, hinge + rank + negative, rel_tol=1e-4)



def test_negative_pair_weighs_exactly_the_negative_pair_term():
    """loss.negative_pair = w adds w × Σ_valid −log(1 − σ(s_neg)) (mean over samples) and nothing else: 0 leaves
    the hinge and the rank-contrastive term (which still ranks the negatives' clips), 1 is the default."""
    gen = torch.Generator().manual_seed(1)
    scores, neg_scores = torch.randn(2, 6, generator=gen), torch.randn(2, 6, generator=gen) * 3
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0.0]])
    labels = torch.tensor([[0, 3, 6, 0, 0, 0], [4, 12, 0, 0, 0, 0.0]])
    batch = _batch([torch.zeros(0, 2)] * 2, labels, torch.tensor([[2, 1], [1, 0]]), torch.tensor([[0, 5], [2, 2]]))
    outputs = _outputs(torch.rand(2, 2, 2), torch.zeros(2, 2, 2), scores, neg_scores, mask)

    def saliency(**weights):
        return build_criterion(LossConfig(**weights), dec_layers=1).loss_saliency(outputs, batch, None)["loss_saliency"]

    # −log(1 − σ(x)) = log(1 + e^x), in double precision
    negative = sum(math.log1p(math.exp(neg_scores[b, j].item())) for b in range(2) for j in range(6) if mask[b, j]) / 2
    assert torch.equal(saliency(negative_pair=1.0), saliency())
    assert math.isclose((saliency() - saliency(negative_pair=0.0)).item(), negative, rel_tol=1e-5)
    assert math.isclose((saliency(negative_pair=0.25) - saliency(negative_pair=0.0)).item(), 0.25 * negative,
                        rel_tol=1e-5)
    rank = _rank_contrastive_by_loops(torch.cat([scores, neg_scores], 1),
                                      torch.cat([labels, torch.zeros_like(labels)], 1), mask.repeat(1, 2))
    assert saliency(negative_pair=0.0).item() > rank > 0  # the negatives' clips are still ranked

def test_saliency_only_mode_skips_set_losses():
    criterion = build_criterion(LossConfig(use_matcher=False), dec_layers=2)
    labels = torch.tensor([[0, 3, 6, 0, 0, 0.0]])
    batch = _batch([torch.zeros(0, 2)], labels, torch.tensor([[2]]), torch.tensor([[0]]))
    terms = criterion(_outputs(torch.rand(1, 2, 2), torch.zeros(1, 2, 2), torch.randn(1, 6)), batch)
    assert set(terms) == {"loss_saliency", "loss"}
    assert torch.isclose(terms["loss"], terms["loss_saliency"])


def test_hinge_is_zero_when_positives_beat_negatives_by_the_margin():
    criterion = build_criterion(LossConfig(), dec_layers=1)
    scores = torch.tensor([[0.0, 5.0, 5.0, 0.0, 0.0, 0.0]])
    assert criterion._saliency_hinge(scores, torch.tensor([[1, 2]]), torch.tensor([[0, 3]])).item() == 0.0
