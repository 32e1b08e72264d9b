"""The evaluator reproduces every number (and the key order) of the shipped reference metrics files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from masra.eval import eval_submission, evaluate, load_ground_truth, load_submission

# (predictions, ground truth, reference metrics, CG-DETR extras in that file)
GOLDEN = [
    ("sample_val_preds.jsonl", "highlight_val_release.jsonl", "sample_val_preds_metrics_raw.json", False),
    ("cgdetr_best_hl_val_preds.jsonl", "highlight_val_release.jsonl", "cgdetr_best_hl_val_preds_metrics.json", True),
    ("cgdetr_hl_test_submission.jsonl", "highlight_test_with_gt.jsonl", "cgdetr_hl_test_submission_metrics_computed.json", False),
]


def assert_same_layout(expected, actual, path="metrics"):
    """Recursive comparison: same keys in the same order, exactly equal numbers."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), path
        assert list(actual) == list(expected), f"{path}: keys {list(actual)} != {list(expected)}"
        for key in expected:
            assert_same_layout(expected[key], actual[key], f"{path}/{key}")
    else:
        assert actual == expected, f"{path}: {actual} != {expected}"


@pytest.mark.parametrize("pred_name, gt_name, metrics_name, extras", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_matches_reference_metrics(qvh_dir: Path, pred_name, gt_name, metrics_name, extras):
    submission = load_submission(qvh_dir / "eval_samples" / pred_name)
    ground_truth = load_ground_truth(qvh_dir / gt_name)
    expected = json.loads((qvh_dir / "eval_samples" / metrics_name).read_text())

    actual = evaluate("qvhighlights", submission, ground_truth, extras=extras)

    assert_same_layout(expected, actual)


def test_row_order_does_not_matter(val_gt, sample_preds):
    rng = random.Random(0)
    shuffled_preds = rng.sample(sample_preds, len(sample_preds))
    shuffled_gt = rng.sample(val_gt, len(val_gt))
    assert eval_submission(shuffled_preds, shuffled_gt) == eval_submission(sample_preds, val_gt)


def test_vectorised_evaluator_equals_literal_loops(val_gt, sample_preds):
    from masra.lab.bench.literal_eval import literal_full_metrics

    subset = sample_preds[:200]
    gt = [row for row in val_gt if row["qid"] in {p["qid"] for p in subset}]
    literal = literal_full_metrics(subset, gt)
    brief = eval_submission(subset, gt)["brief"]
    for key, value in literal.items():
        assert brief[key] == float(f"{value:.2f}")
