import itertools

import torch

from masra.model.matcher import HungarianMatcher


def _pair_cost(pred_span, pred_logit, target, weights=(10.0, 1.0, 4.0)) -> float:
    """The matching cost of one (prediction, target) pair, written out with plain floats."""
    (pc, pw), (tc, tw) = pred_span.tolist(), target.tolist()
    l1 = abs(pc - tc) + abs(pw - tw)
    ps, pe, ts, te = pc - pw / 2, pc + pw / 2, tc - tw / 2, tc + tw / 2
    inter = max(0.0, min(pe, te) - max(ps, ts))
    union = (pe - ps) + (te - ts) - inter
    hull = max(pe, te) - min(ps, ts)
    giou = inter / union - (hull - union) / hull
    p_fg = torch.softmax(pred_logit, -1)[0].item()
    return weights[0] * l1 - weights[1] * giou - weights[2] * p_fg


def test_matcher_finds_the_brute_force_optimum():
    gen = torch.Generator().manual_seed(3)
    matcher = HungarianMatcher()
    for trial in range(6):
        n_query = 4
        sizes = [1 + (trial + i) % 3 for i in range(2)]
        logits = torch.randn(2, n_query, 2, generator=gen)
        spans = torch.rand(2, n_query, 2, generator=gen) * 0.5 + 0.1
        targets = [torch.rand(n, 2, generator=gen) * 0.4 + 0.1 for n in sizes]
        indices = matcher(logits, spans, targets)
        for b, (rows, cols) in enumerate(indices):
            assert len(rows) == len(cols) == sizes[b]
            got = sum(_pair_cost(spans[b, r], logits[b, r], targets[b][c]) for r, c in zip(rows, cols))
            best = min(
                sum(_pair_cost(spans[b, r], logits[b, r], targets[b][c]) for c, r in enumerate(perm))
                for perm in itertools.permutations(range(n_query), sizes[b])
            )
            assert abs(got - best) < 1e-4


def test_matcher_pairs_each_target_with_its_exact_prediction():
    spans = torch.tensor([[[0.2, 0.1], [0.7, 0.2], [0.5, 0.5]]])
    logits = torch.zeros(1, 3, 2)
    targets = [torch.tensor([[0.5, 0.5], [0.2, 0.1]])]
    (rows, cols), = HungarianMatcher()(logits, spans, targets)
    pairs = dict(zip(cols.tolist(), rows.tolist()))
    assert pairs == {0: 2, 1: 0}


def test_matcher_handles_no_targets():
    indices = HungarianMatcher()(torch.zeros(2, 3, 2), torch.rand(2, 3, 2), [torch.zeros(0, 2), torch.zeros(0, 2)])
    assert all(len(r) == 0 and len(c) == 0 for r, c in indices)
