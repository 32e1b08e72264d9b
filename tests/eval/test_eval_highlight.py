"""Highlight-detection metrics against a literal reading of the protocol (docs/evaluation.md)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masra.lab.bench.literal_eval import literal_highlight_ap as reference_get_ap
from masra.eval import eval_submission
from masra.eval.highlight import hit_at_one, saliency_matrices, tie_grouped_average_precision, top_clip


def _batched_ap(columns):
    """tie_grouped_average_precision on ragged (labels, scores) pairs, one label column each."""
    width = max(len(lab) for lab, _ in columns)
    scores = np.full((len(columns), width), -np.inf)
    labels = np.zeros((len(columns), width, 1))
    valid = np.zeros((len(columns), width), dtype=bool)
    for i, (lab, sc) in enumerate(columns):
        scores[i, : len(sc)] = sc
        labels[i, : len(lab), 0] = lab
        valid[i, : len(lab)] = True
    return tie_grouped_average_precision(scores, labels, valid)[:, 0]


@st.composite
def labelled_scores(draw):
    n = draw(st.integers(1, 12))
    labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    scores = draw(st.lists(st.integers(-2, 2).map(float), min_size=n, max_size=n))  # few values: many ties
    return labels, scores


@settings(max_examples=80, deadline=None)
@given(st.lists(labelled_scores(), min_size=1, max_size=5))
def test_ap_matches_literal_protocol(columns):
    expected = [reference_get_ap(lab, sc) for lab, sc in columns]
    np.testing.assert_allclose(_batched_ap(columns), expected, rtol=0, atol=1e-12)


def test_ties_form_one_threshold():
    # labels 1 0 1 0 with scores 3 2 2 1: thresholds 3 -> (P 1, R .5), 2 -> (P 2/3, R 1).
    # Interpolated P at the two recall levels: 1 and 2/3 -> AP (1 + 2/3) / 2 = 5/6.
    # Without tie grouping (the negative ranked first inside the tie) it would be (1 + 2/3)/2 as well,
    # so also check a tie that changes the answer: labels 0 1 with equal scores -> one point P 1/2 -> AP 1/2.
    assert _batched_ap([([1, 0, 1, 0], [3.0, 2.0, 2.0, 1.0])])[0] == pytest.approx(5 / 6)
    assert _batched_ap([([0, 1], [1.0, 1.0])])[0] == pytest.approx(0.5)
    # Ties between positives count one recall jump: labels 1 1 0 with scores 2 2 1 -> one level, P 1 -> AP 1.
    assert _batched_ap([([1, 1, 0], [2.0, 2.0, 1.0])])[0] == 1.0


def test_constant_columns():
    assert _batched_ap([([0, 0, 0], [1.0, 2.0, 3.0]), ([1, 1], [0.0, 5.0])]).tolist() == [0.0, 1.0]


def test_hit_at_one_first_index_and_out_of_range():
    binary = np.array([[[0.0], [1.0], [0.0]]])  # [Q=1, N=3, A=1]
    # tie between clips 1 and 2: argmax takes clip 1 (positive)
    assert hit_at_one(top_clip([[0.0, 5.0, 5.0]]), binary, np.array([3])).tolist() == [1.0]
    # top clip beyond the video's clips (index 3 >= n = 3): a miss
    assert hit_at_one(top_clip([[0.0, 1.0, 0.0, 9.0]]), binary, np.array([3])).tolist() == [0.0]


def test_saliency_matrix_layout():
    gt, num_clips = saliency_matrices([10, 7], [[1, 3], [0]], [[[4, 3, 2], [1, 1, 1]], [[2, 2, 2]]])
    assert num_clips.tolist() == [5, 3]  # int(duration / 2)
    assert gt.shape == (2, 5, 3)
    assert gt[0, 1].tolist() == [4, 3, 2] and gt[0, 3].tolist() == [1, 1, 1]
    assert gt[0, [0, 2, 4]].sum() == 0 and gt[1, 0].tolist() == [2, 2, 2]


def _hl_gt(qid, scores):
    """A 20-s video (10 clips) whose relevant clips carry the same score from all three annotators."""
    ids = [i for i, s in enumerate(scores) if s > 0]
    return {"qid": qid, "duration": 20, "relevant_windows": [[0, 20]], "relevant_clip_ids": ids,
            "saliency_scores": [[scores[i]] * 3 for i in ids]}


def test_perfect_saliency_scores_100_when_annotators_agree():
    # Each query has a clip at every level, annotators agree, prediction = the GT score: every AP is 1.
    gts = [_hl_gt(1, [0, 2, 3, 4, 0, 0, 1, 4, 2, 0]), _hl_gt(2, [4, 4, 3, 0, 2, 0, 0, 0, 0, 1])]
    rows = [{"qid": g["qid"], "pred_saliency_scores": [float(s) for s in _clip_scores(g)]} for g in gts]
    result = eval_submission(rows, gts)
    for level in ("Fair", "Good", "VeryGood"):
        assert result[f"HL-min-{level}"] == {"HL-mAP": 100.0, "HL-Hit1": 100.0}


def test_query_without_positive_caps_hl_map():
    # No clip reaches VeryGood (4): that column is constant 0 -> AP 0, so 100 is out of reach (documented).
    gts = [_hl_gt(1, [0, 2, 3, 0, 0, 0, 0, 0, 0, 0])]
    rows = [{"qid": 1, "pred_saliency_scores": [float(s) for s in _clip_scores(gts[0])]}]
    result = eval_submission(rows, gts)
    assert result["HL-min-Good"]["HL-mAP"] == 100.0
    assert result["HL-min-VeryGood"] == {"HL-mAP": 0.0, "HL-Hit1": 0.0}


def test_prediction_is_cut_or_zero_padded_to_the_clip_count():
    gts = [_hl_gt(1, [0, 0, 0, 0, 0, 0, 0, 0, 0, 4])]
    # Only 3 scores given: clips 3..9 get 0. Thresholds: 0.5 -> clip 0 only (P 0, R 0); 0 -> all 10 clips
    # (P 1/10, R 1). One recall level, interpolated precision max(1/10) -> AP 0.1.
    short = eval_submission([{"qid": 1, "pred_saliency_scores": [0.5, 0.0, 0.0]}], gts)
    assert short["HL-min-VeryGood"]["HL-mAP"] == 10.0
    # 12 scores: the two beyond the video are ignored for mAP, but the arg-max (index 11) is a miss for Hit1.
    long_row = [0.0] * 9 + [1.0, 0.0, 2.0]
    long = eval_submission([{"qid": 1, "pred_saliency_scores": long_row}], gts)
    assert long["HL-min-VeryGood"] == {"HL-mAP": 100.0, "HL-Hit1": 0.0}


def _clip_scores(gt):
    scores = [0] * int(gt["duration"] / 2)
    for cid, s in zip(gt["relevant_clip_ids"], gt["saliency_scores"]):
        scores[cid] = s[0]
    return scores
