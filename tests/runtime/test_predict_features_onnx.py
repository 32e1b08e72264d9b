"""`masra predict` on feature files (``--split``, ``--annotations``) with ``--runtime onnx``, run without torch
(tests/runtime/torch_free.py, in the torch-free venv under CI), gives the submission rows and metrics of `masra
predict --checkpoint` on torch: trained tiny runs (tests/runtime/conftest.py ``trained``) and their exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from masra.cli.main import main
from masra.data.jsonl import write_json
from masra.data.splits import ground_truth_rows, load_records
from masra.errors import MasraError
from masra.eval import evaluate
from masra.runtime import OnnxGrounder
from masra.runtime.bundle import INFO_FILE, MODEL_FILE
from runtime.conftest import runtime_python

# The session's exports are made in the first test that uses them (torch.export on a loaded 2-core machine).
pytestmark = pytest.mark.timeout(1800)

SCRIPT = Path(__file__).with_name("torch_free.py")
TOLERANCE = 1e-4


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_score(windows: list[list[float]]) -> np.ndarray:
    return np.asarray(sorted(windows, key=lambda w: (-w[2], w[0], w[1])))


def assert_same_rows(got: list[dict], expected: list[dict]) -> None:
    """The same samples in the same order; windows (compared in (score, start, end) order: scores are rounded to
    4 decimals) and saliency within the runtime's tolerance. Saliency is written through float16, whose step
    near a value v is up to v / 1024: two outputs 1e-6 apart may round one step apart."""
    assert [(r["qid"], r["query"], r["vid"]) for r in got] == [(r["qid"], r["query"], r["vid"]) for r in expected]
    for g, e in zip(got, expected):
        assert len(g["pred_relevant_windows"]) == len(e["pred_relevant_windows"]) > 0
        np.testing.assert_allclose(by_score(g["pred_relevant_windows"]), by_score(e["pred_relevant_windows"]),
                                   rtol=0, atol=TOLERANCE + 1e-6)
        assert len(g["pred_saliency_scores"]) == len(e["pred_saliency_scores"])
        np.testing.assert_allclose(g["pred_saliency_scores"], e["pred_saliency_scores"], rtol=2**-10, atol=TOLERANCE)


@pytest.mark.parametrize("source", ["split", "annotations"])
def test_predict_on_feature_files_without_torch_gives_the_torch_rows(trained, source, tmp_path):
    """``--split val`` (labelled: metrics too) and ``--annotations`` of the unlabelled test file (no metrics)."""
    args = ["--split", "val"] if source == "split" else ["--annotations", str(trained.data["test"])]
    assert main(["predict", "--checkpoint", str(trained.checkpoint), *args, "--out", str(tmp_path / "torch.jsonl"),
                 "--device", "cpu"]) == 0
    done = subprocess.run([runtime_python(), str(SCRIPT), "masra", "predict", "--checkpoint", str(trained.export),
                           "--runtime", "onnx", *args, "--out", str(tmp_path / "onnx.jsonl")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    expected, got = rows(tmp_path / "torch.jsonl"), rows(tmp_path / "onnx.jsonl")
    assert len(got) == len(rows(trained.data["val"]))  # the test file is the val file without labels
    assert_same_rows(got, expected)
    metrics = {name: tmp_path / f"{name}_metrics.json" for name in ("torch", "onnx")}
    if source == "annotations":
        assert not any(path.exists() for path in metrics.values())
        return
    # The runtime's metrics are the official ones of its rows on the val file's labels.
    records = load_records(str(trained.data["val"]), trained.cfg.data)
    write_json(tmp_path / "official.json", evaluate(trained.cfg.data.dataset, got, ground_truth_rows(records),
                                                    ground_truth_checked=True), indent=4)
    assert metrics["onnx"].read_text() == (tmp_path / "official.json").read_text()
    assert metrics["torch"].is_file()
    assert "MR-full-mAP" in done.stdout  # the brief metrics, printed without rich


def test_the_export_records_where_the_checkpoint_reads_its_feature_files(trained):
    info = OnnxGrounder.from_export(trained.export, threads=1).info
    data = trained.cfg.data
    assert info.data is not None
    assert (info.data.eval_path, info.data.test_path, info.data.v_feat_dirs, info.data.t_feat_dir) == (
        data.eval_path, data.test_path, data.v_feat_dirs, data.t_feat_dir)
    assert info.data.batch_size == trained.cfg.train.eval_batch_size


def test_an_export_without_the_feature_files_record_refuses_feature_files(trained, tmp_path):
    """An export written before ``data`` existed in export.json still runs on features the caller gives."""
    folder = tmp_path / "old"
    folder.mkdir()
    shutil.copy(trained.export / MODEL_FILE, folder / MODEL_FILE)
    raw = json.loads((trained.export / INFO_FILE).read_text())
    del raw["data"]
    (folder / INFO_FILE).write_text(json.dumps(raw))
    grounder = OnnxGrounder.from_export(folder, threads=1)
    with pytest.raises(MasraError, match="export it again") as err:
        grounder.predict_split(split="val")
    assert err.value.field == "data"


def test_set_moves_an_exports_feature_files(trained, tmp_path):
    """`--set` on an export moves its annotation and feature files (moved folders give the same rows, without
    torch) and its batch size; the rows are those of the recorded locations."""
    assert main(["predict", "--checkpoint", str(trained.export), "--runtime", "onnx", "--split", "val", "--out",
                 str(tmp_path / "recorded.jsonl")]) == 0
    moved = tmp_path / "moved"
    shutil.copytree(trained.data["video"], moved / "clips")
    shutil.copytree(trained.data["text"], moved / "queries")
    shutil.copy(trained.data["val"], moved / "val.jsonl")
    shutil.copy(trained.data["val"], tmp_path / "other_val.jsonl")
    sets = [f"data.v_feat_dirs=[{moved / 'clips'}]", f"data.t_feat_dir={moved / 'queries'}",
            f"data.eval_path={moved / 'val.jsonl'}", "train.eval_batch_size=1"]
    done = subprocess.run([runtime_python(), str(SCRIPT), "masra", "predict", "--checkpoint", str(trained.export),
                           "--runtime", "onnx", "--split", "val", "--out", str(tmp_path / "moved.jsonl"),
                           *[arg for item in sets for arg in ("--set", item)]], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert_same_rows(rows(tmp_path / "moved.jsonl"), rows(tmp_path / "recorded.jsonl"))
    shutil.rmtree(moved / "clips")  # the recorded locations were not read: a moved folder that is gone fails
    with pytest.raises(MasraError, match="clips"):
        OnnxGrounder.from_export(trained.export, threads=1).predict_split(split="val", overrides=sets)


@pytest.mark.parametrize("item, field, message", [
    ("data.max_v_l=10", "--set", "only data.domain, data.eval_path"),
    ("model.hidden_dim=64", "--set", "fixed when it is exported"),
    ("data.eval_path", "--set", "only data.domain"),
    ("data.v_feat_dirs=features", "data.v_feat_dirs", "not a list of folder names"),
    ("train.eval_batch_size=0", "train.eval_batch_size", "not a positive integer"),
    ("data.t_feat_dir=[a, b]", "data.t_feat_dir", "not a path"),
    ("data.eval_path=[", "data.eval_path", "not a YAML value"),
])
def test_set_on_an_export_refuses_what_the_export_fixed(trained, tmp_path, capsys, item, field, message):
    with pytest.raises(MasraError, match=re.escape(message)) as err:
        OnnxGrounder.from_export(trained.export, threads=1).predict_split(split="val", overrides=[item])
    assert err.value.field == field
    assert main(["predict", "--checkpoint", str(trained.export), "--runtime", "onnx", "--split", "val", "--out",
                 str(tmp_path / "x.jsonl"), "--set", item]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()
