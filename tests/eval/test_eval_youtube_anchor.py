"""masra's YouTube Highlights mAP against lighthouse's own evaluator code (lighthouse_youtube_reference.py, a
literal copy of the ``youtube_highlight`` branch of ``compute_hl_results``), on generated predictions: the
reference number is computed here, never copied.

lighthouse trains and evaluates one YouTube Highlights domain at a time, so its mAP is masra's per-domain value.
Predictions are continuous scores without ties (highlight_anchor.py, shared with test_eval_tvsum_anchor.py).

A video without a positive clip: lighthouse's loop appends 0 to that video's list and then ``continue``s past
``video_ap_collected.append``, so the video is skipped, as masra skips it; the generated domains include such
videos. The one place the two differ is a domain in which no video has a positive clip (lighthouse: NaN from
``np.mean([])``, masra: None); ``test_a_video_without_positives_is_skipped_by_both`` shows both cases.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from masra.eval import evaluate, load_ground_truth
from required import require_path
from highlight_anchor import informed_predictions, random_predictions, saliency_tensors
from lighthouse_youtube_reference import compute_hl_results_youtube

DOMAINS = ("dog", "gymnastics", "parkour", "skating", "skiing", "surfing")


def _generated_domain(rng: np.random.Generator, videos: int, domain: str) -> list[dict]:
    """YouTube-Highlights-like ground truth: one 0/1 label per clip, positives in a few runs; about one video
    in six has no positive clip at all."""
    rows = []
    for k in range(videos):
        n_clips = int(rng.integers(2, 60))
        label = np.zeros(n_clips, dtype=int)
        if rng.random() >= 1 / 6:
            for _ in range(int(rng.integers(1, 4))):
                start = int(rng.integers(0, n_clips))
                label[start:start + int(rng.integers(1, n_clips + 1))] = 1
        rows.append({"qid": f"{domain}{k}", "domain": domain, "label": [[int(v)] for v in label]})
    return rows


def _lighthouse_map(gt: list[dict], sub: list[dict]) -> float:
    return compute_hl_results_youtube(saliency_tensors(gt, sub), [g["label"] for g in gt])["mAP"]


def _assert_per_domain_equal(gt: list[dict], sub: list[dict]) -> None:
    result = evaluate("youtube_highlights", sub, gt)
    domains = sorted({g["domain"] for g in gt})
    assert sorted(result["per_domain"]) == domains
    for domain in domains:
        rows = [g for g in gt if g["domain"] == domain]
        assert result["brief"][f"YouTube-mAP-{domain}"] == _lighthouse_map(rows, sub), domain


@pytest.mark.parametrize("seed", range(5))
def test_youtube_map_equals_lighthouse_on_generated_domains(seed):
    rng = np.random.default_rng(seed)
    gt = [row for domain in DOMAINS[:3] for row in _generated_domain(rng, int(rng.integers(8, 20)), domain)]
    assert any(not any(c[0] for c in g["label"]) for g in gt)  # the skipped case is exercised
    informed = informed_predictions(rng, gt, scale=0.5)
    for sub in (random_predictions(rng, gt, extra=seed), informed):
        _assert_per_domain_equal(gt, sub)


def test_youtube_map_equals_lighthouse_on_the_real_val_annotations(shared_data: Path):
    path = require_path(shared_data / "youtube_highlights" / "youtube_valid.jsonl",
                        "YouTube Highlights val annotations")
    gt = load_ground_truth(path, "youtube_highlights")
    assert sorted({g["domain"] for g in gt}) == list(DOMAINS)
    rng = np.random.default_rng(0)
    for sub in (random_predictions(rng, gt, extra=3), informed_predictions(rng, gt, scale=0.5)):
        _assert_per_domain_equal(gt, sub)


def test_a_video_without_positives_is_skipped_by_both():
    # "a": labels 0 1 0 1 ranked by 0.1 0.9 0.8 0.2 -> 1 0 1 0: AP 19/24 (test_eval_tvsum_youtube.py);
    # "b": no positive clip. Counting "b" as AP 0 would give 19/48; both evaluators give 19/24.
    gt = [
        {"qid": "a", "domain": "dog", "label": [[0], [1], [0], [1]]},
        {"qid": "b", "domain": "dog", "label": [[0], [0], [0]]},
        {"qid": "c", "domain": "surfing", "label": [[0], [0]]},
    ]
    sub = [
        {"qid": "a", "pred_saliency_scores": [0.1, 0.9, 0.8, 0.2]},
        {"qid": "b", "pred_saliency_scores": [0.3, 0.2, 0.1]},
        {"qid": "c", "pred_saliency_scores": [0.7, 0.1]},
    ]
    result = evaluate("youtube_highlights", sub, gt)
    assert _lighthouse_map(gt[:2], sub) == result["brief"]["YouTube-mAP-dog"] == round(19 / 24, 5)
    assert result["per_domain"]["dog"]["videos"] == 1
    # The difference: a domain with no positive clip anywhere. lighthouse averages an empty list (NaN, with
    # numpy's warning); masra reports None and leaves the domain out of the overall mean.
    with pytest.warns(RuntimeWarning):
        assert math.isnan(_lighthouse_map(gt[2:], sub))
    assert result["brief"]["YouTube-mAP-surfing"] is None
    assert result["per_domain"]["surfing"] == {"YouTube-mAP": None, "videos": 0}
    assert result["brief"]["YouTube-mAP"] == round(19 / 24, 5)
