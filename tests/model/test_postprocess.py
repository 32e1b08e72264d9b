import math

import torch

from masra.config import EvalConfig
from masra.model.postprocess import outputs_to_submission, round_windows, temporal_nms


def _outputs(logits, spans, saliency, mask):
    return {"pred_logits": logits, "pred_spans": spans, "saliency_scores": saliency, "video_mask": mask}


def _logits_for(probabilities):
    """Logits whose foreground softmax is the given probability."""
    p = torch.tensor(probabilities)
    return torch.stack([torch.log(p), torch.log(1 - p)], dim=-1)


def test_windows_are_scaled_sorted_and_four_decimals():
    spans = torch.tensor([[[0.5, 0.2], [0.25, 0.1], [0.7, 0.3333]]])
    logits = _logits_for([[0.3, 0.9, 0.6]])
    rows = outputs_to_submission(
        _outputs(logits, spans, torch.zeros(1, 3), torch.ones(1, 3)),
        [{"qid": 7, "vid": "v", "query": "q", "duration": 10}],
        EvalConfig(postprocess="none"),
        clip_length=2.0,
    )
    windows = rows[0]["pred_relevant_windows"]
    assert [w[2] for w in windows] == [0.9, 0.6, 0.3]
    assert windows[0][:2] == [2.0, 3.0]  # (0.25 ∓ 0.05) × 10
    assert windows[1][:2] == [float(f"{(0.7 - 0.3333 / 2) * 10:.4f}"), float(f"{(0.7 + 0.3333 / 2) * 10:.4f}")]
    assert all(v == round(v, 4) for w in windows for v in w)
    assert set(rows[0]) == {"qid", "query", "vid", "pred_relevant_windows", "pred_saliency_scores"}


def test_equal_scores_keep_query_order():
    spans = torch.tensor([[[0.1, 0.1], [0.5, 0.1], [0.9, 0.1]]])
    rows = outputs_to_submission(
        _outputs(torch.zeros(1, 3, 2), spans, torch.zeros(1, 3), torch.ones(1, 3)),
        [{"qid": 1, "vid": "v", "duration": 100}],
        EvalConfig(postprocess="none"),
        clip_length=2.0,
    )
    assert [w[0] for w in rows[0]["pred_relevant_windows"]] == [5.0, 45.0, 85.0]


def test_qvhighlights_rounding_is_half_to_even_on_multiples_of_two_and_clamped():
    windows = [[3.0, 5.0, 0.9], [-1.2, 151.0, 0.5], [6.9, 7.1, 0.1]]
    rounded = round_windows(windows, "qvhighlights", clip_length=2.0)
    # 3/2 = 1.5 -> 2 (even) -> 4; 5/2 = 2.5 -> 2 -> 4: the window collapses to zero length and is kept.
    assert rounded[0] == [4.0, 4.0, 0.9]
    assert rounded[1] == [0.0, 150.0, 0.5]
    assert rounded[2] == [6.0, 8.0, 0.1]


def test_round_clip_and_round_only_use_the_clip_length():
    windows = [[0.4, 160.6, 0.25]]
    assert round_windows(windows, "round_clip", clip_length=1.0) == [[0.0, 150.0, 0.25]]
    assert round_windows(windows, "round_only", clip_length=1.0) == [[0.0, 161.0, 0.25]]
    assert round_windows(windows, "none", clip_length=1.0) == windows


def test_clamp_to_duration_happens_before_rounding():
    spans = torch.tensor([[[0.95, 0.3]]])  # [8.0, 11.0] s for a 10-s video
    rows = outputs_to_submission(
        _outputs(torch.zeros(1, 1, 2), spans, torch.zeros(1, 2), torch.ones(1, 2)),
        [{"qid": 1, "vid": "v", "duration": 10}],
        EvalConfig(postprocess="round_only", clamp_to_duration=True),
        clip_length=1.0,
    )
    assert rows[0]["pred_relevant_windows"][0][:2] == [8.0, 10.0]


def test_saliency_goes_through_fp16_and_is_cut_to_the_valid_length():
    saliency = torch.tensor([[0.1234567, -11.93, 3.3333333, 9.0], [1.0, 2.0, 3.0, 4.0]])
    mask = torch.tensor([[1, 1, 1, 0.0], [1, 1, 1, 1.0]])
    rows = outputs_to_submission(
        _outputs(torch.zeros(2, 1, 2), torch.full((2, 1, 2), 0.5), saliency, mask),
        [{"qid": 1, "vid": "a", "duration": 8}, {"qid": 2, "vid": "b", "duration": 8}],
        EvalConfig(),
        clip_length=2.0,
    )
    first = rows[0]["pred_saliency_scores"]
    assert len(first) == 3 and len(rows[1]["pred_saliency_scores"]) == 4
    assert first == saliency[0, :3].half().float().tolist()
    assert first[1] == -11.9296875  # the nearest fp16 value, not -11.93
    assert not math.isclose(first[0], 0.1234567, rel_tol=1e-6)


def test_without_saliency_rows_have_only_windows():
    rows = outputs_to_submission(
        _outputs(torch.zeros(1, 1, 2), torch.full((1, 1, 2), 0.5), torch.zeros(1, 2), torch.ones(1, 2)),
        [{"qid": "s1-d2_0", "vid": "s1-d2", "duration": 30.5}],
        EvalConfig(postprocess="round_only"),
        clip_length=2.0,
        with_saliency=False,
    )
    assert "pred_saliency_scores" not in rows[0]
    assert rows[0]["qid"] == "s1-d2_0"


def test_nms_drops_overlaps_above_the_threshold_by_hull_iou():
    windows = [[0.0, 10.0, 0.9], [1.0, 10.0, 0.8], [20.0, 30.0, 0.7], [0.0, 5.0, 0.6]]
    # [1,10] vs [0,10]: 9/10 > .5 dropped; [0,5] vs [0,10]: 5/10 = .5, not > .5, kept.
    assert temporal_nms(windows, 0.5) == [[0.0, 10.0, 0.9], [20.0, 30.0, 0.7], [0.0, 5.0, 0.6]]
    assert temporal_nms(windows, 0.5, max_after=2) == [[0.0, 10.0, 0.9], [20.0, 30.0, 0.7]]
    assert temporal_nms(windows, 0.5, max_before=2) == [[0.0, 10.0, 0.9]]


def test_nms_runs_when_configured():
    spans = torch.tensor([[[0.5, 0.2], [0.51, 0.2], [0.1, 0.1]]])
    rows = outputs_to_submission(
        _outputs(_logits_for([[0.9, 0.8, 0.7]]), spans, torch.zeros(1, 1), torch.ones(1, 1)),
        [{"qid": 1, "vid": "v", "duration": 100}],
        EvalConfig(postprocess="none", nms_threshold=0.7),
        clip_length=2.0,
    )
    assert [w[2] for w in rows[0]["pred_relevant_windows"]] == [0.9, 0.7]
