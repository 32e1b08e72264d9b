"""TVSum top-5 mAP and YouTube Highlights mAP: hand-derived cases and a smoke run on the shipped val files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from masra.errors import MasraError
from masra.eval import evaluate, load_ground_truth
from masra.eval.highlight_datasets import trapezoid_ap, tvsum_video_ap, youtube_video_ap


def test_trapezoid_ap_by_hand():
    # ranked labels 1 0 1 0 1, num_gt 3 (prc_j = hits / j; recall only moves at hits):
    # j=1 rec 1/3 prc 1   -> (1/3)(prc_0 1 + 1)/2     = 1/3
    # j=3 rec 2/3 prc 2/3 -> (1/3)(prc_2 1/2 + 2/3)/2 = 7/36
    # j=5 rec 1   prc 3/5 -> (1/3)(prc_4 1/2 + 3/5)/2 = 11/60
    ranked = np.array([[1.0], [0.0], [1.0], [0.0], [1.0]])
    assert trapezoid_ap(ranked)[0] == pytest.approx(1 / 3 + 7 / 36 + 11 / 60)
    assert trapezoid_ap(np.zeros((5, 1)))[0] == 0.0  # no positive among the ranked clips


def test_tvsum_video_ap_by_hand():
    # annotator 0: scores 5 1 4 2 3 1 -> lower median of (1 1 2 3 4 5) is 2 -> positives clips 0, 2, 4.
    # annotator 1: 1 1 1 1 1 2 -> median 1 -> only clip 5, which is ranked 6th: no positive in the top 5 -> 0.
    label = [[5, 1], [1, 1], [4, 1], [2, 1], [3, 1], [1, 2]]
    pred = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    ap = tvsum_video_ap(pred, label)
    np.testing.assert_allclose(ap, [128 / 180, 0.0])  # ranked labels 1 0 1 0 1: 1/3 + 7/36 + 11/60 = 128/180


def test_tvsum_ties_rank_lower_index_first():
    label = [[1], [5], [1], [1], [1], [1], [1]]  # median 1: only clip 1 is positive
    # all scores equal: ranking 0, 1, 2, ... puts the positive 2nd:
    # j=1 rec 0 prc 0 -> 0; j=2 rec 1 prc 1/2 -> (1 - 0)(0 + 1/2)/2 = 1/4
    assert tvsum_video_ap([0.0] * 7, label)[0] == pytest.approx(0.25)


def test_youtube_video_ap_by_hand():
    # labels 0 1 0 1 ranked by 0.1 0.9 0.8 0.2 -> 1 0 1 0; num_gt 2: 1/2 + (1/2)(1/2 + 2/3)/2 = 19/24
    assert youtube_video_ap([0.1, 0.9, 0.8, 0.2], [[0], [1], [0], [1]]) == pytest.approx(19 / 24)
    assert youtube_video_ap([0.1, 0.2], [[0], [0]]) is None  # no positive: the video is skipped


def test_youtube_domains_and_skipped_video():
    gt = [
        {"qid": "a", "domain": "dog", "label": [[0], [1], [0], [1]]},
        {"qid": "b", "domain": "dog", "label": [[0], [0], [0]]},  # skipped, does not pull the mean to 0
        {"qid": "c", "domain": "surfing", "label": [[1], [0]]},
    ]
    sub = [
        {"qid": "a", "pred_saliency_scores": [0.1, 0.9, 0.8, 0.2]},
        {"qid": "b", "pred_saliency_scores": [0.3, 0.2, 0.1]},
        {"qid": "c", "pred_saliency_scores": [0.7, 0.1]},
    ]
    result = evaluate("youtube_highlights", sub, gt)
    assert result["brief"] == {
        "YouTube-mAP": round((19 / 24 + 1.0) / 2, 5),
        "YouTube-mAP-dog": round(19 / 24, 5),
        "YouTube-mAP-surfing": 1.0,
    }
    assert result["per_domain"]["dog"] == {"YouTube-mAP": round(19 / 24, 5), "videos": 1}


def test_short_prediction_is_an_error():
    gt = [{"qid": "a", "domain": "BK", "label": [[1], [2], [3]]}]
    with pytest.raises(MasraError, match="2 scores for a video of 3 clips"):
        evaluate("tvsum", [{"qid": "a", "pred_saliency_scores": [0.1, 0.2]}], gt)


def test_missing_video_is_an_error():
    gt = [{"qid": "a", "domain": "BK", "label": [[1], [2]]}, {"qid": "b", "domain": "BK", "label": [[1], [2]]}]
    with pytest.raises(MasraError, match="missing"):
        evaluate("tvsum", [{"qid": "a", "pred_saliency_scores": [0.1, 0.2]}], gt)


def test_tvsum_val_smoke(shared_data: Path):
    gt = load_ground_truth(shared_data / "tvsum" / "tvsum_val.jsonl", "tvsum")
    # deterministic prediction: the mean annotator score of each clip
    sub = [{"qid": g["qid"], "pred_saliency_scores": np.mean(g["label"], axis=1).tolist()} for g in gt]
    result = evaluate("tvsum", sub, gt)
    domains = sorted({g["domain"] for g in gt})
    assert list(result["per_domain"]) == domains
    values = [result["brief"][f"TVSum-top5-mAP-{d}"] for d in domains]
    assert all(0.0 < v <= 1.0 for v in values)
    # the overall value is the mean of the unrounded per-domain values, so within rounding of this mean
    assert abs(result["brief"]["TVSum-top5-mAP"] - np.mean(values)) <= 1e-5
    # reversing the ranking must not score better than the consensus ranking
    reverse = [{"qid": g["qid"], "pred_saliency_scores": (-np.mean(g["label"], axis=1)).tolist()} for g in gt]
    assert evaluate("tvsum", reverse, gt)["brief"]["TVSum-top5-mAP"] < result["brief"]["TVSum-top5-mAP"]


def test_youtube_val_smoke(shared_data: Path):
    gt = load_ground_truth(shared_data / "youtube_highlights" / "youtube_valid.jsonl", "youtube_highlights")
    oracle = [{"qid": g["qid"], "pred_saliency_scores": [float(c[0]) for c in g["label"]]} for g in gt]
    result = evaluate("youtube_highlights", oracle, gt)
    assert set(result["brief"].values()) == {1.0}  # the labels themselves rank every positive first
    flat = [{"qid": g["qid"], "pred_saliency_scores": [float(-i) for i in range(len(g["label"]))]} for g in gt]
    assert 0.0 < evaluate("youtube_highlights", flat, gt)["brief"]["YouTube-mAP"] < 1.0
