"""masra's TVSum top-5 mAP against QD-DETR's own evaluator code (qd_detr_tvsum_reference.py, a literal copy),
on generated predictions: the reference number is computed here, never copied.

QD-DETR trains and evaluates one TVSum domain at a time, so its mAP is masra's per-domain value. Predictions
are continuous scores without ties (highlight_anchor.py, shared with test_eval_youtube_anchor.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from masra.eval import evaluate, load_ground_truth
from highlight_anchor import informed_predictions, random_predictions, saliency_tensors
from qd_detr_tvsum_reference import compute_hl_results_tvsum


def _generated_domain(rng: np.random.Generator, videos: int, domain: str) -> list[dict]:
    """TVSum-like ground truth: 20 annotators scoring every clip 1..5, often constant over stretches."""
    rows = []
    for k in range(videos):
        n_clips = int(rng.integers(6, 40))
        base = rng.integers(1, 6, size=(n_clips, 1))
        noise = rng.integers(-1, 2, size=(n_clips, 20)) * (rng.random((n_clips, 20)) < 0.4)
        rows.append({"qid": f"{domain}{k}", "domain": domain, "label": np.clip(base + noise, 1, 5).astype(float).tolist()})
    return rows


def _qd_detr_map(gt: list[dict], sub: list[dict]) -> float:
    return compute_hl_results_tvsum(saliency_tensors(gt, sub), [g["label"] for g in gt])["mAP"]


@pytest.mark.parametrize("seed", range(5))
def test_tvsum_map_equals_qd_detr_on_generated_domains(seed):
    rng = np.random.default_rng(seed)
    gt = _generated_domain(rng, 12, "BK") + _generated_domain(rng, 9, "VT")
    # Better-than-chance predictions too: the mean annotator score plus noise.
    informed = informed_predictions(rng, gt, scale=0.5)
    for sub in (random_predictions(rng, gt, extra=seed), informed):
        result = evaluate("tvsum", sub, gt)
        for domain in ("BK", "VT"):
            rows = [g for g in gt if g["domain"] == domain]
            assert result["brief"][f"TVSum-top5-mAP-{domain}"] == _qd_detr_map(rows, sub)


def test_tvsum_map_equals_qd_detr_on_the_real_val_annotations(shared_data: Path):
    gt = load_ground_truth(shared_data / "tvsum" / "tvsum_val.jsonl", "tvsum")
    rng = np.random.default_rng(0)
    sub = informed_predictions(rng, gt, scale=0.3)
    result = evaluate("tvsum", sub, gt)
    domains = sorted({g["domain"] for g in gt})
    assert len(domains) == 10
    for domain in domains:
        rows = [g for g in gt if g["domain"] == domain]
        assert result["brief"][f"TVSum-top5-mAP-{domain}"] == _qd_detr_map(rows, sub)
