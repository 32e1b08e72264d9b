"""One set of label rules at two levels: every row the annotation reader accepts passes the evaluator's
ground-truth check (so records' rows go to the evaluator unchecked), while the evaluator accepts rows that
only the file format forbids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from masra.data.annotations import check_annotations
from masra.data.splits import ground_truth_rows
from masra.errors import MasraError
from masra.eval import evaluate
from masra.eval.submission import validate_ground_truth, validate_label_matrix

QVH_ROW = {
    "qid": 1, "query": "a man talks", "duration": 150, "vid": "abc_def_30.0_180.0",
    "relevant_windows": [[2, 6]], "relevant_clip_ids": [1, 2], "saliency_scores": [[1, 2, 3], [4, 4, 0]],
}
CHARADES_ROW = {"qid": 7, "query": "person opens door", "duration": 30.5, "vid": "AB12C", "relevant_windows": [[1.5, 9.0]]}
TVSUM_ROW = {"qid": "v1", "query": "title", "duration": 2, "vid": "v1", "domain": "BK", "label": [[1.0] * 20, [5.0] * 20]}
YOUTUBE_ROW = {"qid": "y1", "query": "dog", "duration": 5.0, "vid": "y1", "domain": "dog", "label": [[0], [1], [0]]}

# (dataset, base row, changes); a None value removes the key. Each either breaks a rule of both levels or
# only a rule of the file format.
VARIANTS = [
    ("qvhighlights", QVH_ROW, {}),
    ("qvhighlights", QVH_ROW, {"relevant_windows": [[6, 2]]}),
    ("qvhighlights", QVH_ROW, {"relevant_windows": [[2, 2]], "relevant_clip_ids": [], "saliency_scores": []}),
    ("qvhighlights", QVH_ROW, {"relevant_windows": [[2, 160]]}),
    ("qvhighlights", QVH_ROW, {"relevant_clip_ids": [1, 3]}),
    ("qvhighlights", QVH_ROW, {"relevant_clip_ids": [1, 1]}),
    ("qvhighlights", QVH_ROW, {"relevant_clip_ids": [1, 80]}),
    ("qvhighlights", QVH_ROW, {"saliency_scores": [[1, 2, 3], [4, 5, 0]]}),
    ("qvhighlights", QVH_ROW, {"saliency_scores": [[1, 2, 3], [4.5, 4, 0]]}),
    ("qvhighlights", QVH_ROW, {"saliency_scores": [[1, 2, 3]]}),
    # odd duration: the last window clip (62) lies past the int(125 / 2) = 62 clips the evaluator scores
    ("qvhighlights", QVH_ROW, {"duration": 125, "relevant_windows": [[122, 125]], "relevant_clip_ids": [61, 62]}),
    ("qvhighlights", QVH_ROW, {"duration": 1, "relevant_windows": [[0, 1]], "relevant_clip_ids": [0], "saliency_scores": [[1, 1, 1]]}),
    ("charades_sta", CHARADES_ROW, {}),
    ("charades_sta", CHARADES_ROW, {"relevant_windows": [[-1.0, 3.0]]}),
    ("charades_sta", CHARADES_ROW, {"relevant_windows": []}),
    ("tvsum", TVSUM_ROW, {}),
    ("tvsum", TVSUM_ROW, {"domain": None}),
    ("tvsum", TVSUM_ROW, {"label": [[1.0] * 20, [6.0] * 20]}),
    ("tvsum", TVSUM_ROW, {"label": [[1.0] * 20, [1.0] * 19]}),
    ("youtube_highlights", YOUTUBE_ROW, {}),
    ("youtube_highlights", YOUTUBE_ROW, {"label": [[0], [2], [0]]}),
    ("youtube_highlights", YOUTUBE_ROW, {"label": [[0], [float("nan")], [0]]}),
]


def _row(base: dict, changes: dict) -> dict:
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def _annotation_ok(tmp_path: Path, dataset: str, row: dict) -> bool:
    path = tmp_path / "ann.jsonl"
    path.write_text(json.dumps(row) + "\n")
    return check_annotations(path, dataset).ok


def _evaluation_ok(dataset: str, row: dict) -> bool:
    try:
        if dataset in ("tvsum", "youtube_highlights"):
            validate_label_matrix([row])
        else:
            validate_ground_truth([row], moments=True, saliency=dataset == "qvhighlights")
    except MasraError:
        return False
    return True


@pytest.mark.parametrize("index", range(len(VARIANTS)))
def test_every_annotation_row_passes_the_evaluation_rules(tmp_path: Path, index: int) -> None:
    dataset, base, changes = VARIANTS[index]
    row = _row(base, changes)
    if _annotation_ok(tmp_path, dataset, row):
        assert _evaluation_ok(dataset, row)


def test_the_evaluator_accepts_rows_only_the_file_format_forbids(tmp_path: Path) -> None:
    format_only = [
        ("qvhighlights", QVH_ROW, {"relevant_clip_ids": [1, 3]}),  # the official evaluator takes any clip ids
        ("qvhighlights", QVH_ROW, {"saliency_scores": [[1, 2, 3], [4.5, 4, 0]]}),
        ("charades_sta", CHARADES_ROW, {"relevant_windows": [[3.0, 3.0]]}),
        ("tvsum", TVSUM_ROW, {"label": [[1.0] * 20, [6.0] * 20]}),
    ]
    for dataset, base, changes in format_only:
        row = _row(base, changes)
        assert not _annotation_ok(tmp_path, dataset, row) and _evaluation_ok(dataset, row), changes


def test_rules_the_evaluator_needs_hold_for_annotation_files(tmp_path: Path) -> None:
    odd = _row(QVH_ROW, {"duration": 125, "relevant_windows": [[122, 125]], "relevant_clip_ids": [61, 62]})
    path = tmp_path / "ann.jsonl"
    path.write_text(json.dumps(odd) + "\n")
    [error] = check_annotations(path, "qvhighlights").errors
    assert (error.line, error.field) == (1, "relevant_clip_ids") and "[0, 62)" in error.message
    path.write_text(json.dumps(_row(TVSUM_ROW, {"domain": None})) + "\n")
    [error] = check_annotations(path, "tvsum").errors
    assert (error.line, error.field) == (1, "domain")


def test_records_are_scored_without_a_second_check_and_give_the_same_metrics(tmp_path: Path, monkeypatch) -> None:
    rows = [dict(QVH_ROW, qid=q) for q in (1, 2)]
    path = tmp_path / "ann.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    gt = ground_truth_rows(check_annotations(path, "qvhighlights").records)
    preds = [{"qid": q, "pred_relevant_windows": [[2.0, 6.0, 0.9]], "pred_saliency_scores": [0.1] * 75} for q in (1, 2)]
    checked_once = evaluate("qvhighlights", preds, gt)

    def refuse(*args, **kwargs):
        raise AssertionError("ground truth checked again")

    monkeypatch.setattr("masra.eval.qvhighlights.validate_ground_truth", refuse)
    assert evaluate("qvhighlights", preds, gt, ground_truth_checked=True) == checked_once
