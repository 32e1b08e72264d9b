"""Bad submissions and ground truth give a MasraError naming file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from masra.errors import MasraError
from masra.eval import eval_submission, evaluate, load_ground_truth, load_submission

GOOD = {"qid": 1, "pred_relevant_windows": [[0.0, 10.0, 0.9]], "pred_saliency_scores": [0.1, 0.2]}


def _write(path: Path, rows: list) -> Path:
    # rows may be raw strings (to write NaN or broken JSON) or objects
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


BAD_ROWS = [
    ({"pred_relevant_windows": [[0, 10, 0.5]], "pred_saliency_scores": [0.1]}, "qid", "missing"),
    ({"qid": 2.5, "pred_relevant_windows": [[0, 10, 0.5]], "pred_saliency_scores": [0.1]}, "qid", "int or a string"),
    ({"qid": 2, "pred_relevant_windows": [[0, 10]], "pred_saliency_scores": [0.1]}, "pred_relevant_windows", "start, end, score"),
    ({"qid": 2, "pred_relevant_windows": [[0, 10, "0.5"]], "pred_saliency_scores": [0.1]}, "pred_relevant_windows", "numbers"),
    ({"qid": 2, "pred_relevant_windows": [[0, 10, True]], "pred_saliency_scores": [0.1]}, "pred_relevant_windows", "numbers"),
    ({"qid": 2, "pred_relevant_windows": [[20, 10, 0.5]], "pred_saliency_scores": [0.1]}, "pred_relevant_windows", "ends before"),
    ({"qid": 2, "pred_relevant_windows": "0 10 0.5", "pred_saliency_scores": [0.1]}, "pred_relevant_windows", "list"),
    ({"qid": 2, "pred_relevant_windows": [[0, 10, 0.5]], "pred_saliency_scores": 0.1}, "pred_saliency_scores", "list"),
    ({"qid": 2, "pred_relevant_windows": [[0, 10, 0.5]], "pred_saliency_scores": []}, "pred_saliency_scores", "empty"),
    ({"qid": 2, "pred_relevant_windows": [[0, 10, 0.5]], "pred_saliency_scores": [0.1, None]}, "pred_saliency_scores", "number"),
    ({"qid": 2, "pred_saliency_scores": [0.1]}, "pred_relevant_windows", "first row has it"),
    ({"qid": 1, "pred_relevant_windows": [[0, 10, 0.5]], "pred_saliency_scores": [0.1]}, "qid", "duplicate"),
    ('{"qid": 2, "pred_relevant_windows": [[0, 10, NaN]], "pred_saliency_scores": [0.1]}', "pred_relevant_windows", "finite"),
    ('{"qid": 2, "pred_relevant_windows": [[0, 10, 0.5]], "pred_saliency_scores": [Infinity]}', "pred_saliency_scores", "finite"),
]


@pytest.mark.parametrize("bad_row, field, message", BAD_ROWS)
def test_bad_row_names_file_line_field(tmp_path: Path, bad_row, field, message):
    path = _write(tmp_path / "preds.jsonl", [GOOD, bad_row])
    with pytest.raises(MasraError) as info:
        load_submission(path)
    err = info.value
    assert (err.file, err.line, err.field) == (str(path), 2, field)
    assert message in err.message


def test_in_memory_rows_are_validated_too():
    with pytest.raises(MasraError) as info:
        eval_submission([GOOD, {"qid": 2, "pred_relevant_windows": [[0, 1, float("nan")]], "pred_saliency_scores": [0.1]}], [])
    assert (info.value.line, info.value.field) == (2, "pred_relevant_windows")


def test_broken_json_names_the_line(tmp_path: Path):
    path = _write(tmp_path / "preds.jsonl", [GOOD, "{not json"])
    with pytest.raises(MasraError, match=r"preds.jsonl:2: invalid JSON"):
        load_submission(path)


def _gt(qid):
    return {"qid": qid, "duration": 20, "relevant_windows": [[0, 10]], "relevant_clip_ids": [0], "saliency_scores": [[4, 4, 4]]}


def test_qid_mismatch_lists_missing_and_extra():
    rows = [dict(GOOD, qid=q) for q in (1, 2, 99)]
    with pytest.raises(MasraError) as info:
        eval_submission(rows, [_gt(q) for q in (1, 2, 3, 4)])
    text = str(info.value)
    assert "2 missing, e.g. [3, 4]" in text and "1 not in the ground truth, e.g. [99]" in text
    assert info.value.field == "qid"


def test_match_number_false_scores_shared_qids():
    rows = [dict(GOOD, qid=q) for q in (1, 99)]
    shared = eval_submission(rows, [_gt(1), _gt(3)], match_number=False)
    alone = eval_submission([dict(GOOD, qid=1)], [_gt(1)])
    assert shared == alone


def test_gt_clip_id_outside_video(tmp_path: Path):
    bad = dict(_gt(2), relevant_clip_ids=[10])  # 20 s -> clips 0..9
    path = _write(tmp_path / "gt.jsonl", [_gt(1), bad])
    with pytest.raises(MasraError) as info:
        load_ground_truth(path)
    assert (info.value.file, info.value.line, info.value.field) == (str(path), 2, "relevant_clip_ids")


def test_gt_without_windows(tmp_path: Path):
    path = _write(tmp_path / "gt.jsonl", [_gt(1), {"qid": 2, "duration": 20, "relevant_windows": []}])
    with pytest.raises(MasraError) as info:
        load_ground_truth(path)
    assert (info.value.line, info.value.field) == (2, "relevant_windows")


def test_unknown_dataset():
    with pytest.raises(MasraError, match="unknown dataset"):
        evaluate("kinetics", [GOOD], [_gt(1)])


def test_moment_only_datasets_ignore_saliency():
    result = evaluate("charades_sta", [GOOD], [{"qid": 1, "duration": 30.0, "relevant_windows": [[0.0, 10.0]]}])
    assert not any(key.startswith("HL") for key in result)
    assert result["brief"]["MR-full-mIoU"] == 100.0 and result["brief"]["MR-full-R1@0.3"] == 100.0


@pytest.mark.parametrize("kind", ["submission", "qvhighlights gt", "tvsum gt"])
def test_int_and_string_qid_clash_names_both_lines(tmp_path: Path, kind: str):
    rows = {
        "submission": {"pred_relevant_windows": [[0.0, 2.0, 0.5]]},
        "qvhighlights gt": {"relevant_windows": [[0, 2]]},
        "tvsum gt": {"domain": "BK", "label": [[1.0, 2.0]]},
    }[kind]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps({"qid": q, **rows}) for q in (9769, 5, "9769")) + "\n")
    with pytest.raises(MasraError) as info:
        if kind == "submission":
            load_submission(path)
        else:
            load_ground_truth(path, "tvsum" if kind == "tvsum gt" else "qvhighlights")
    assert (info.value.file, info.value.line, info.value.field) == (str(path), 3, "qid")
    assert "qid '9769' and qid 9769 on line 1 name the same files" in info.value.message
