"""Moment-retrieval metrics of the official evaluator: mAP over IoU thresholds, R1 and mIoU, per length bucket.

Every function works on all queries at once (padded arrays); see docs/evaluation.md for the protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from masra.eval.iou import cross_iou, hull_iou
from masra.eval.padding import pad_ragged
from masra.eval.percent import official_thresholds, threshold_key, to_percent

logger = logging.getLogger(__name__)

MAP_THRESHOLDS = official_thresholds(0.5, 0.95, 10)
R1_THRESHOLDS = official_thresholds(0.5, 0.95, 10)
# CG-DETR's evaluator variant reports R1 from 0.3 and the mean IoU of the top-1 window.
R1_THRESHOLDS_EXTRAS = official_thresholds(0.3, 0.95, 14)
MAX_PRED_WINDOWS = 10
# (name, lo, hi): a GT window belongs to the bucket when lo < length <= hi; "full" is never filtered.
LENGTH_BUCKETS = (("short", 0.0, 10.0), ("middle", 10.0, 30.0), ("long", 30.0, 150.0), ("full", 0.0, 150.0))


def voc_average_precision(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """VOC-2011 all-point interpolated AP along the last axis ([..., K], [..., K] -> [...]).

    Pads precision with 0 at both ends and recall with 0 / 1, makes precision non-increasing from the
    right and sums (R_k - R_{k-1}) * P_k. Summed left to right like the reference (exact zeros where R is
    flat do not change the sum).
    """
    pad = np.zeros(precision.shape[:-1] + (1,))
    mprec = np.concatenate([pad, precision, pad], axis=-1)
    mrec = np.concatenate([pad, recall, pad + 1.0], axis=-1)
    mprec = np.flip(np.maximum.accumulate(np.flip(mprec, -1), axis=-1), -1)
    steps = np.diff(mrec, axis=-1) * mprec[..., 1:]
    ap = np.zeros(precision.shape[:-1])
    for k in range(steps.shape[-1]):
        ap = ap + steps[..., k]
    return ap


def average_precision_per_query(
    predictions: Sequence[Sequence[Sequence[float]]],
    ground_truth: Sequence[Sequence[Sequence[float]]],
    thresholds: Sequence[float] = MAP_THRESHOLDS,
) -> np.ndarray:
    """Detection AP of each query at each IoU threshold -> [Q, T].

    predictions: per query its [start, end, score] rows (already cut to the first 10 in file order; may
    be empty -> AP 0). ground_truth: per query its [start, end] windows (at least one).
    Predictions are visited by score, descending, ties in file order. At each threshold a prediction is a
    true positive when some not-yet-taken GT window has IoU >= threshold; it takes the one with the
    highest IoU (ties: the later GT window, like reversing numpy's stable argsort).
    """
    # Most queries have one or two GT windows: padding all to the longest (25 on QVH val) would waste
    # work, so queries are scored in groups of similar GT count.
    ap = np.zeros((len(predictions), len(thresholds)))
    groups: dict[int, list[int]] = {}
    for i, windows in enumerate(ground_truth):
        groups.setdefault((len(windows) - 1).bit_length(), []).append(i)
    for members in groups.values():
        ap[members] = _average_precision_padded(
            [predictions[i] for i in members], [ground_truth[i] for i in members], thresholds
        )
    return ap


def _average_precision_padded(
    predictions: Sequence[Sequence[Sequence[float]]],
    ground_truth: Sequence[Sequence[Sequence[float]]],
    thresholds: Sequence[float],
) -> np.ndarray:
    """``average_precision_per_query`` on one padded batch."""
    pred, pred_valid = pad_ragged(predictions, columns=3)  # [Q, K, 3], [Q, K]
    gt, gt_valid = pad_ragged(ground_truth, columns=2)  # [Q, M, 2], [Q, M]
    num_q, num_k = pred_valid.shape
    num_m = gt_valid.shape[1]
    thr = np.asarray(thresholds, dtype=np.float64)  # [T]
    num_t = len(thr)
    if num_k == 0:
        return np.zeros((num_q, num_t))

    order = np.argsort(-np.where(pred_valid, pred[..., 2], -np.inf), axis=1, kind="stable")  # [Q, K]
    pred = np.take_along_axis(pred, order[..., None], axis=1)
    pred_valid = np.take_along_axis(pred_valid, order, axis=1)

    iou = np.where(gt_valid[:, None, :], cross_iou(pred[..., :2], gt), -1.0)  # [Q, K, M]
    visit = np.argsort(iou, axis=-1, kind="stable")[..., ::-1]  # GT windows by decreasing IoU
    rank = np.empty_like(visit)  # rank[q, k, m] = position of GT m in prediction k's visiting order
    np.put_along_axis(rank, visit, np.broadcast_to(np.arange(num_m), visit.shape), axis=-1)

    taken = np.zeros((num_q, num_t, num_m), dtype=bool)
    true_pos = np.zeros((num_q, num_t, num_k))
    q_idx = np.arange(num_q)[:, None]
    t_idx = np.arange(num_t)[None, :]
    for k in range(num_k):
        eligible = (iou[:, None, k, :] >= thr[None, :, None]) & ~taken & pred_valid[:, k, None, None]  # [Q, T, M]
        choice = np.argmin(np.where(eligible, rank[:, None, k, :], num_m), axis=-1)  # [Q, T]
        hit = eligible.any(axis=-1)
        true_pos[:, :, k] = hit
        taken[q_idx, t_idx, choice] |= hit

    # Padded prediction slots count as false positives: recall stays flat there, so AP is unchanged.
    tp_cum = np.cumsum(true_pos, axis=-1)
    fp_cum = np.cumsum(1.0 - true_pos, axis=-1)
    recall = tp_cum / gt_valid.sum(axis=1)[:, None, None]
    precision = tp_cum / (tp_cum + fp_cum)
    return voc_average_precision(precision, recall)


def top1_iou(top1: np.ndarray, ground_truth: Sequence[Sequence[Sequence[float]]]) -> np.ndarray:
    """Hull IoU of each query's top-1 window with its best-matching GT window ([Q, 2] -> [Q]).

    The GT window is the arg-max of the true IoU (first on ties); the reported IoU then uses the hull
    as denominator, exactly as the official R1.
    """
    gt, gt_valid = pad_ragged(ground_truth, columns=2)  # [Q, M, 2]
    iou = np.where(gt_valid, cross_iou(top1[:, None, :], gt)[:, 0, :], -1.0)  # [Q, M]
    best = np.argmax(iou, axis=1)
    chosen = gt[np.arange(len(gt)), best]  # [Q, 2]
    return hull_iou(top1, chosen)


def windows_in_bucket(windows: Sequence[Sequence[float]], lo: float, hi: float, name: str) -> list:
    """GT windows of one query that fall in a length bucket; "full" keeps everything untouched."""
    if name == "full":
        return list(windows)
    return [w for w in windows if lo < w[1] - w[0] <= hi]


def bucket_metrics(
    pred_windows: Sequence[Sequence[Sequence[float]]],
    gt_windows: Sequence[Sequence[Sequence[float]]],
    *,
    extras: bool = False,
    strict_empty: bool = False,
) -> dict[str, Any]:
    """{"MR-mAP": {...}, "MR-R1": {...}} (+ "MR-mIoU" first with extras) for one set of queries.

    pred_windows[i] are query i's submitted rows in file order, gt_windows[i] its GT windows (>= 1).
    Queries with no predicted window leave the mAP mean (official) unless ``strict_empty``; in R1 and
    mIoU they count as a miss (the reference crashes on them).
    """
    has_pred = [len(p) > 0 for p in pred_windows]
    map_rows = [i for i, ok in enumerate(has_pred) if ok or strict_empty]
    ap = average_precision_per_query(
        [pred_windows[i][:MAX_PRED_WINDOWS] for i in map_rows], [gt_windows[i] for i in map_rows]
    )  # [Q', T]
    if len(map_rows):
        ap_per_thd = ap.mean(axis=0)
        mr_map: dict[str, float | None] = {
            threshold_key(t): to_percent(v) for t, v in zip(MAP_THRESHOLDS, ap_per_thd)
        }
        mr_map["average"] = to_percent(float(np.mean(ap_per_thd)))
    else:
        mr_map = {threshold_key(t): None for t in MAP_THRESHOLDS}
        mr_map["average"] = None

    top1 = np.array([p[0][:2] if len(p) else [0.0, 0.0] for p in pred_windows], dtype=np.float64).reshape(-1, 2)
    ious = top1_iou(top1, gt_windows) if len(pred_windows) else np.zeros(0)
    ious = np.where(np.asarray(has_pred, dtype=bool), ious, 0.0)
    r1_thresholds = R1_THRESHOLDS_EXTRAS if extras else R1_THRESHOLDS
    mr_r1 = {
        threshold_key(t): (to_percent(float(np.mean(ious >= t))) if len(ious) else None) for t in r1_thresholds
    }
    result: dict[str, Any] = {}
    if extras:
        result["MR-mIoU"] = to_percent(float(np.mean(ious))) if len(ious) else None
    result["MR-mAP"] = mr_map
    result["MR-R1"] = mr_r1
    return result


def evaluate_moment_retrieval(
    qids: Sequence[Hashable],
    pred_windows: dict[Hashable, list],
    gt_windows: dict[Hashable, list],
    *,
    extras: bool = False,
    strict_empty: bool = False,
) -> dict[str, dict[str, Any]]:
    """Metrics per length bucket {"short", "middle", "long", "full"} for the given queries (in this order).

    A bucket keeps, per query, only the GT windows of its length range and drops queries left with
    none; predictions are never filtered.
    """
    empty = sum(1 for q in qids if len(pred_windows[q]) == 0)
    if empty:
        treatment = "count as AP 0 (strict_empty)" if strict_empty else "leave the mAP mean (official protocol)"
        logger.warning(
            "%d of %d queries have an empty pred_relevant_windows list; they %s and count as misses in R1",
            empty, len(qids), treatment,
        )
    results = {}
    for name, lo, hi in LENGTH_BUCKETS:
        kept = [(q, windows_in_bucket(gt_windows[q], lo, hi, name)) for q in qids]
        kept = [(q, w) for q, w in kept if w]
        results[name] = bucket_metrics(
            [pred_windows[q] for q, _ in kept], [w for _, w in kept], extras=extras, strict_empty=strict_empty
        )
    return results
