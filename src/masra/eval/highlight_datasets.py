"""Highlight-detection mAP of TVSum (top-5, UMT protocol) and YouTube Highlights, grouped per domain.

Both follow QD-DETR / CG-DETR / lighthouse: per video, rank clips by predicted saliency and accumulate a
trapezoid AP over the ranking; per domain the mean over videos (and annotators), ``round(x, 5)`` as a
fraction. See docs/evaluation.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from masra.errors import MasraError

TVSUM_TOP_K = 5


def trapezoid_ap(ranked_labels: np.ndarray) -> np.ndarray:
    """AP of binary labels already in ranked order, per column ([K, A] -> [A]).

    num_gt = positives among the K ranked entries; walking j = 1..K with rec_j = hits/num_gt and
    prec_j = hits/j from (rec_0, prec_0) = (0, 1): AP = sum (rec_j - rec_{j-1}) * (prec_{j-1} + prec_j) / 2.
    A column without positives scores 0.
    """
    num_k, num_a = ranked_labels.shape
    num_gt = ranked_labels.sum(axis=0)
    safe_gt = np.where(num_gt > 0, num_gt, 1.0)
    hits = np.zeros(num_a)
    rec = np.zeros(num_a)
    prc = np.ones(num_a)
    ap = np.zeros(num_a)
    for j in range(num_k):
        hits = hits + ranked_labels[j]
        new_rec = hits / safe_gt
        new_prc = hits / (j + 1)
        ap = ap + (new_rec - rec) * (prc + new_prc) / 2
        rec, prc = new_rec, new_prc
    return np.where(num_gt > 0, ap, 0.0)


def _ranking(pred: Sequence[float], num_clips: int, qid: Any) -> np.ndarray:
    """Clip indices by decreasing predicted saliency over the first num_clips predictions (ties: lower index first)."""
    scores = np.asarray(pred, dtype=np.float64)
    if len(scores) < num_clips:
        who = "" if qid is None else f"qid {qid!r}: "
        raise MasraError(f"{who}{len(scores)} scores for a video of {num_clips} clips", field="pred_saliency_scores")
    return np.argsort(-scores[:num_clips], kind="stable")


def tvsum_video_ap(pred: Sequence[float], label: Sequence[Sequence[float]], qid: Any = None) -> np.ndarray:
    """Top-5 AP of one TVSum video for each annotator -> [A].

    An annotator's clips are positive when their score is above the LOWER median of that annotator's
    column (torch.median); num_gt counts positives among the 5 top-ranked clips only.
    """
    labels = np.asarray(label, dtype=np.float64)  # [n_clips, A]
    n = len(labels)
    lower_median = np.sort(labels, axis=0)[(n - 1) // 2]  # [A]
    binary = (labels > lower_median).astype(np.float64)
    order = _ranking(pred, n, qid)
    return trapezoid_ap(binary[order[:TVSUM_TOP_K]])


def youtube_video_ap(pred: Sequence[float], label: Sequence[Sequence[float]], qid: Any = None) -> float | None:
    """AP of one YouTube Highlights video over the full ranking; None when it has no positive clip
    (such a video is skipped, as in the reference code)."""
    binary = (np.asarray(label, dtype=np.float64)[:, :1] > 0).astype(np.float64)  # [n_clips, 1]
    if binary.sum() == 0:
        return None
    order = _ranking(pred, len(binary), qid)
    return float(trapezoid_ap(binary[order])[0])


def _per_domain(
    submission: Sequence[dict[str, Any]], ground_truth: Sequence[dict[str, Any]]
) -> dict[str, list[tuple[Any, list[float], list]]]:
    preds = {row["qid"]: row["pred_saliency_scores"] for row in submission}
    missing = [g["qid"] for g in ground_truth if g["qid"] not in preds]
    if missing:
        raise MasraError(
            f"no prediction for {len(missing)} ground-truth videos, e.g. {missing[:5]}", field="qid"
        )
    domains: dict[str, list] = {}
    for g in ground_truth:
        domains.setdefault(g["domain"], []).append((g["qid"], preds[g["qid"]], g["label"]))
    return dict(sorted(domains.items()))


def _summarise(name: str, per_domain: dict[str, tuple[float | None, int]]) -> dict[str, Any]:
    scored = [v for v, _ in per_domain.values() if v is not None]
    average = round(float(np.mean(scored)), 5) if scored else None
    brief = {name: average}
    brief.update({f"{name}-{d}": round(v, 5) if v is not None else None for d, (v, _) in per_domain.items()})
    return {
        "brief": brief,
        "per_domain": {
            d: {name: round(v, 5) if v is not None else None, "videos": n} for d, (v, n) in per_domain.items()
        },
    }


def eval_tvsum(submission: Sequence[dict[str, Any]], ground_truth: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """TVSum top-5 mAP per domain (mean over the domain's videos and 20 annotators) and their mean.

    Returns {"brief": {"TVSum-top5-mAP": mean over domains, "TVSum-top5-mAP-<domain>": ...},
    "per_domain": {domain: {"TVSum-top5-mAP", "videos"}}}; values are fractions rounded to 5 decimals.
    """
    per_domain = {}
    for domain, videos in _per_domain(submission, ground_truth).items():
        aps = [tvsum_video_ap(pred, label, qid) for qid, pred, label in videos]  # each [A]
        per_domain[domain] = (float(np.mean(aps)), len(videos))
    return _summarise("TVSum-top5-mAP", per_domain)


def eval_youtube_highlights(
    submission: Sequence[dict[str, Any]], ground_truth: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """YouTube Highlights mAP per domain (mean over its videos with >= 1 positive clip) and their mean.

    Same layout as ``eval_tvsum`` with the name "YouTube-mAP"; a domain whose videos all lack positives
    reports None and stays out of the mean.
    """
    per_domain = {}
    for domain, videos in _per_domain(submission, ground_truth).items():
        aps = [youtube_video_ap(pred, label, qid) for qid, pred, label in videos]
        scored = [a for a in aps if a is not None]
        per_domain[domain] = (float(np.mean(scored)) if scored else None, len(scored))
    return _summarise("YouTube-mAP", per_domain)
