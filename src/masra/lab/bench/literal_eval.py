"""The QVHighlights metrics written as literal per-query, per-threshold loops straight from the protocol
text (docs/evaluation.md, "The QVHighlights protocol"). Slow on purpose: the vectorised evaluator (masra.eval) is tested against
these references and ``masra bench eval`` measures it against them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MR_THRESHOLDS = [float(f"{t:.2f}") for t in np.linspace(0.5, 0.95, 10)]


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union else 0.0


def _voc_ap(precision: Sequence[float], recall: Sequence[float]) -> float:
    mprec = [0.0] + list(precision) + [0.0]
    mrec = [0.0] + list(recall) + [1.0]
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mprec[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


def literal_moment_ap(preds: Sequence[Sequence[float]], gts: Sequence[Sequence[float]], threshold: float) -> float:
    """AP of one query at one IoU threshold: preds [[st, ed, score]] in file order, gts [[st, ed]]."""
    preds = sorted(preds[:10], key=lambda p: -p[2])  # stable: ties keep file order
    taken: set[int] = set()
    tp = []
    for p in preds:
        ious = [_iou(p, g) for g in gts]
        # decreasing IoU; among equal IoUs the later GT first (numpy argsort()[::-1])
        visit = list(reversed(sorted(range(len(gts)), key=lambda j: ious[j])))
        hit = False
        for j in visit:
            if ious[j] < threshold:
                break
            if j in taken:
                continue
            taken.add(j)
            hit = True
            break
        tp.append(hit)
    if not tp:
        return 0.0
    tp_cum = np.cumsum(tp)
    precision = tp_cum / np.arange(1, len(tp) + 1)
    recall = tp_cum / len(gts)
    return _voc_ap(precision, recall)


def literal_highlight_ap(labels: Sequence[int], scores: Sequence[float]) -> float:
    """One precision/recall point per distinct score, interpolated from the recall-1 end; AP = plain mean
    of the interpolated precision at the last point of every distinct recall level (without the appended
    recall-0 point). Constant label columns give 0 (all negative) or 1 (all positive)."""
    labels = list(labels)
    if len(set(labels)) == 1:
        return float(labels[0])
    points = []  # from the highest threshold down
    for t in sorted(set(scores), reverse=True):
        chosen = [y for y, s in zip(labels, scores) if s >= t]
        points.append((sum(chosen) / len(chosen), sum(chosen) / sum(labels)))
    precision = [p for p, _ in reversed(points)] + [1.0]
    recall = [r for _, r in reversed(points)] + [0.0]
    for i in range(1, len(precision)):
        precision[i] = max(precision[i - 1], precision[i])
    picked = [precision[i] for i in range(len(recall) - 1) if recall[i] != recall[i + 1]]
    return sum(picked) / len(picked)


def literal_full_metrics(submission: Sequence[dict[str, Any]], ground_truth: Sequence[dict[str, Any]]) -> dict[str, float]:
    """MR-full-mAP (average over thresholds) and HL-min-VeryGood-mAP, each ×100 and unrounded."""
    gt_by_qid = {row["qid"]: row for row in ground_truth}
    mr_aps, hl_aps = [], []
    for row in submission:
        gt = gt_by_qid[row["qid"]]
        if row["pred_relevant_windows"]:
            windows = gt["relevant_windows"]
            mr_aps.append([literal_moment_ap(row["pred_relevant_windows"], windows, t) for t in MR_THRESHOLDS])
        n_clips = int(gt["duration"] / 2)
        scores = list(row["pred_saliency_scores"][:n_clips]) + [0.0] * max(0, n_clips - len(row["pred_saliency_scores"]))
        matrix = np.zeros((n_clips, 3))
        matrix[gt["relevant_clip_ids"]] = gt["saliency_scores"]
        for annotator in range(3):
            hl_aps.append(literal_highlight_ap([int(v >= 4) for v in matrix[:, annotator]], scores))
    return {
        "MR-full-mAP": 100 * float(np.mean(np.mean(mr_aps, axis=0))),
        "HL-min-VeryGood-mAP": 100 * float(np.mean(hl_aps)),
    }
