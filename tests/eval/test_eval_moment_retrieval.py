"""Moment-retrieval metrics against a plain per-threshold reference written from the protocol text."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masra.lab.bench.literal_eval import literal_moment_ap as reference_ap
from masra.eval import eval_submission
from masra.eval.iou import cross_iou, hull_iou
from masra.eval.moment_retrieval import MAP_THRESHOLDS, average_precision_per_query, top1_iou


# ---- strategies: coarse grids so that ties in scores and IoUs are frequent -------------------------------------
def _window(draw, with_score):
    start = draw(st.integers(0, 10)) * 2.0
    end = start + draw(st.integers(0, 6)) * 2.0
    return [start, end, float(draw(st.integers(0, 3))) / 4] if with_score else [start, end]


@st.composite
def mr_query(draw):
    gts = [_window(draw, False) for _ in range(draw(st.integers(1, 5)))]
    gts = [g if g[1] > g[0] else [g[0], g[0] + 2.0] for g in gts]
    preds = [_window(draw, True) for _ in range(draw(st.integers(0, 13)))]
    return preds, gts


@settings(max_examples=60, deadline=None)
@given(st.lists(mr_query(), min_size=1, max_size=6))
def test_ap_matches_brute_force(queries):
    preds = [q[0][:10] for q in queries]
    gts = [q[1] for q in queries]
    ap = average_precision_per_query(preds, gts)
    expected = np.array([[reference_ap(p, g, t) for t in MAP_THRESHOLDS] for p, g in zip(preds, gts)])
    np.testing.assert_allclose(ap, expected, rtol=0, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.lists(mr_query(), min_size=2, max_size=6), st.randoms(use_true_random=False))
def test_ap_is_per_query(queries, rnd):
    order = list(range(len(queries)))
    rnd.shuffle(order)
    preds = [q[0][:10] for q in queries]
    gts = [q[1] for q in queries]
    ap = average_precision_per_query(preds, gts)
    shuffled = average_precision_per_query([preds[i] for i in order], [gts[i] for i in order])
    np.testing.assert_array_equal(shuffled, ap[order])


def test_tied_scores_keep_file_order():
    # Two predictions with the same score: the first in the file is matched first. GT [0, 10].
    # Order (hit, miss): P = 1, 1/2 at R = 1, 1 -> AP 1.   Order (miss, hit) would give 0.5.
    hit, miss = [0.0, 10.0, 0.5], [50.0, 60.0, 0.5]
    ap = average_precision_per_query([[hit, miss], [miss, hit]], [[[0.0, 10.0]], [[0.0, 10.0]]])
    assert ap[0, 0] == 1.0
    assert ap[1, 0] == 0.5


def test_each_gt_window_is_matched_once():
    # Two identical predictions on one GT window: the second is a false positive at every threshold.
    ap = average_precision_per_query([[[0.0, 10.0, 0.9], [0.0, 10.0, 0.8]]], [[[0.0, 10.0]]])
    np.testing.assert_array_equal(ap, np.ones((1, 10)))  # P = 1 at R = 1 first, the FP adds no recall
    ap2 = average_precision_per_query([[[0.0, 10.0, 0.8], [0.0, 10.0, 0.9], [20.0, 30.0, 0.1]]], [[[0.0, 10.0], [20.0, 30.0]]])
    # sorted: (0-10 .9) TP, (0-10 .8) FP, (20-30) TP -> P = 1, 1/2, 2/3 at R = .5, .5, 1 -> .5*1 + .5*(2/3)
    np.testing.assert_allclose(ap2, np.full((1, 10), 0.5 + 0.5 * 2 / 3))


def test_only_first_ten_rows_count():
    # The 11th row would be a hit but is cut before sorting, even though its score is the highest.
    misses = [[100.0, 110.0, 0.1]] * 10
    rows = misses + [[0.0, 10.0, 0.99]]
    gt = [{"qid": 1, "relevant_windows": [[0.0, 10.0]], "duration": 150}]
    result = eval_submission([{"qid": 1, "pred_relevant_windows": rows}], gt)
    assert result["full"]["MR-mAP"]["average"] == 0.0


def test_iou_flavours():
    a = np.array([[0.0, 10.0]])
    b = np.array([[5.0, 20.0]])
    assert cross_iou(a, b)[0, 0] == pytest.approx(5 / 20)
    assert hull_iou(a, b)[0] == pytest.approx(5 / 20)
    far = np.array([[30.0, 40.0]])
    assert hull_iou(a, far)[0] == 0.0  # disjoint: 0 although the hull is 40
    point = np.array([[3.0, 3.0]])
    assert cross_iou(point, point)[0, 0] == 0.0  # zero union -> 0, not nan


def test_r1_uses_first_row_and_best_gt():
    # The top-1 is the first row, picked against the GT window with the highest IoU (the second here).
    gts = [[[0.0, 10.0], [20.0, 30.0]]]
    assert top1_iou(np.array([[20.0, 30.0]]), gts)[0] == 1.0
    assert top1_iou(np.array([[22.0, 30.0]]), gts)[0] == pytest.approx(0.8)


def _gt(qid, windows):
    return {"qid": qid, "duration": 150, "relevant_windows": windows}


def test_r1_threshold_is_inclusive_and_first_row_wins(caplog):
    # IoU exactly 0.5 counts at 0.5; a better but lower-ranked row does not help R1.
    gt = [_gt(1, [[0.0, 20.0]])]
    rows = [{"qid": 1, "pred_relevant_windows": [[0.0, 10.0, 0.2], [0.0, 20.0, 0.9]]}]
    with caplog.at_level(logging.WARNING, logger="masra.eval"):
        result = eval_submission(rows, gt, extras=True)
    assert result["full"]["MR-R1"]["0.5"] == 100.0
    assert result["full"]["MR-R1"]["0.55"] == 0.0
    assert result["full"]["MR-mIoU"] == 50.0
    assert result["full"]["MR-mAP"]["average"] == 100.0  # mAP sorts by score: the exact window comes first
    assert any("not sorted by score" in r.getMessage() for r in caplog.records)


def test_length_buckets_filter_gt_not_predictions():
    # A query with a 6-s and a 40-s window: "short" keeps only the 6-s one, the 40-s prediction becomes a FP.
    gt = [_gt(1, [[0.0, 6.0], [50.0, 90.0]])]
    rows = [{"qid": 1, "pred_relevant_windows": [[50.0, 90.0, 0.9], [0.0, 6.0, 0.8]]}]
    result = eval_submission(rows, gt)
    assert result["full"]["MR-mAP"]["average"] == 100.0
    assert result["short"]["MR-mAP"]["average"] == 50.0  # FP then TP: P = 1/2 at R = 1
    assert result["long"]["MR-mAP"]["average"] == 100.0
    assert result["middle"]["MR-mAP"]["average"] is None  # no query in the bucket
    assert result["brief"]["MR-middle-mAP"] is None


def test_perfect_submission_scores_100(val_gt):
    # Windows = GT windows: 100 on "full" for every query with <= 10 windows (only 10 rows are read).
    gt = [g for g in val_gt if len(g["relevant_windows"]) <= 10]
    rows = [{"qid": g["qid"], "pred_relevant_windows": [[*w, 1.0] for w in g["relevant_windows"]]} for g in gt]
    full = eval_submission(rows, gt, extras=True)["full"]
    assert set(full["MR-mAP"].values()) == {100.0}
    assert set(full["MR-R1"].values()) == {100.0}
    assert full["MR-mIoU"] == 100.0


def test_empty_window_lists_official_and_strict(caplog):
    gt = [_gt(1, [[0.0, 10.0]]), _gt(2, [[20.0, 30.0]])]
    rows = [
        {"qid": 1, "pred_relevant_windows": [[0.0, 10.0, 0.9]]},
        {"qid": 2, "pred_relevant_windows": []},
    ]
    with caplog.at_level(logging.WARNING, logger="masra.eval"):
        official = eval_submission(rows, gt)
    assert official["full"]["MR-mAP"]["average"] == 100.0  # query 2 leaves the mean
    assert official["full"]["MR-R1"]["0.5"] == 50.0  # but is a miss for R1
    assert any("1 of 2 queries have an empty" in r.getMessage() for r in caplog.records)

    strict = eval_submission(rows, gt, strict_empty=True)
    assert strict["full"]["MR-mAP"]["average"] == 50.0
