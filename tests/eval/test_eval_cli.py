"""``masra evaluate``: prediction-file mode, overwrite protection and the checkpoint hand-off."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from masra.cli.main import main
from masra.eval import eval_submission


def _files(tmp_path: Path) -> tuple[Path, Path, list, list]:
    gt = [
        {"qid": 1, "duration": 20, "relevant_windows": [[0, 10]], "relevant_clip_ids": [0, 1], "saliency_scores": [[4, 4, 4], [1, 1, 1]]},
        {"qid": 2, "duration": 20, "relevant_windows": [[10, 20]], "relevant_clip_ids": [5], "saliency_scores": [[3, 2, 4]]},
    ]
    preds = [
        {"qid": 1, "pred_relevant_windows": [[0.0, 10.0, 0.9], [10.0, 14.0, 0.3]], "pred_saliency_scores": [0.9, 0.1] + [0.0] * 8},
        {"qid": 2, "pred_relevant_windows": [[8.0, 20.0, 0.8]], "pred_saliency_scores": [0.5] * 10},
    ]
    pred_path, gt_path = tmp_path / "preds.jsonl", tmp_path / "gt.jsonl"
    pred_path.write_text("\n".join(json.dumps(r) for r in preds))
    gt_path.write_text("\n".join(json.dumps(r) for r in gt))
    return pred_path, gt_path, preds, gt


def test_writes_metrics_and_prints_brief(tmp_path: Path, capsys):
    pred_path, gt_path, preds, gt = _files(tmp_path)
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--pred", str(pred_path), "--gt", str(gt_path), "--out", str(out), "--extras"]) == 0
    assert json.loads(out.read_text()) == eval_submission(preds, gt, extras=True)
    printed = capsys.readouterr().out
    assert "MR-full-mAP" in printed and "MR-full-mIoU" in printed


def test_refuses_to_overwrite_without_force(tmp_path: Path, capsys):
    pred_path, gt_path, _, _ = _files(tmp_path)
    out = tmp_path / "metrics.json"
    out.write_text("keep me")
    args = ["evaluate", "--pred", str(pred_path), "--gt", str(gt_path), "--out", str(out)]
    assert main(args) == 1
    assert "already exists" in capsys.readouterr().err and out.read_text() == "keep me"
    assert main(args + ["--force"]) == 0
    assert "brief" in json.loads(out.read_text())


def test_bad_prediction_file_is_reported(tmp_path: Path, capsys):
    pred_path, gt_path, _, _ = _files(tmp_path)
    pred_path.write_text('{"qid": 1, "pred_relevant_windows": [[0, 10]]}')
    assert main(["evaluate", "--pred", str(pred_path), "--gt", str(gt_path), "--out", str(tmp_path / "m.json")]) == 1
    err = capsys.readouterr().err
    assert "preds.jsonl:1: field 'pred_relevant_windows'" in err


def test_pred_and_checkpoint_are_exclusive(tmp_path: Path):
    with pytest.raises(SystemExit):
        main(["evaluate", "--pred", "p.jsonl", "--checkpoint", "c", "--out", str(tmp_path / "m.json")])


def test_checkpoint_mode_calls_inference(tmp_path: Path, monkeypatch):
    calls = {}

    def evaluate_checkpoint(**kwargs):
        calls.update(kwargs)
        return {"brief": {"MR-full-mAP": 1.0}}

    monkeypatch.setitem(sys.modules, "masra.inference", types.SimpleNamespace(evaluate_checkpoint=evaluate_checkpoint))
    out = tmp_path / "m.json"
    code = main(["evaluate", "--checkpoint", str(tmp_path / "ckpt"), "--split", "test", "--out", str(out),
                 "--set", "data.max_v_l=75"])
    assert code == 0
    assert calls == {
        "checkpoint": tmp_path / "ckpt", "split": "test", "out": out, "config_overrides": ["data.max_v_l=75"], "force": False,
    }


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
def test_out_naming_an_existing_folder_is_refused_and_leaves_nothing(tmp_path: Path, capsys, force):
    pred_path, gt_path, _, _ = _files(tmp_path)
    out = tmp_path / "results"
    out.mkdir()
    (out / "old_metrics.json").write_text("{}")
    args = ["evaluate", "--pred", str(pred_path), "--gt", str(gt_path), "--out", str(out), *force]
    assert main(args) == 1
    assert f"{out}: is a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt.jsonl", "preds.jsonl", "results"]
    assert [p.name for p in out.iterdir()] == ["old_metrics.json"]

