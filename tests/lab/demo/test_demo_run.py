"""``masra demo`` end to end on a handful of rows with a tiny model (1 epoch): the files it writes, the
official metrics layout, and its refusal to overwrite results."""

from __future__ import annotations

import json
import re

import pytest
from conftest import TINY_TRAIN, TINY_VAL

from masra.cli.main import main
from masra.data.jsonl import read_jsonl
from masra.lab.demo.chance import chance_metrics, random_predictions
from masra.lab.demo.training import KEY_METRICS

TINY_MODEL = [
    "model.hidden_dim=32",
    "model.nheads=2",
    "model.dim_feedforward=64",
    "model.lrca.proj_dim=16",
    "model.dai.codebook_size=8",
    "train.batch_size=8",
    "train.eval_batch_size=16",
]


def _demo(out, *extra):
    args = ["demo", "--out", str(out), "--seed", "0", "--epochs", "1",
            "--train-rows", str(TINY_TRAIN), "--val-rows", str(TINY_VAL), *extra]
    for override in TINY_MODEL:
        args += ["--set", override]
    return main(args)


@pytest.mark.timeout(300)
def test_demo_writes_metrics_predictions_and_plots(tiny_dataset_copy, capsys):
    out = tiny_dataset_copy.parent
    manifest_before = (tiny_dataset_copy / "manifest.json").stat().st_mtime_ns
    assert _demo(out, "--compare-baseline") == 0
    printed = capsys.readouterr().out
    assert "baseline" in printed and "masra" in printed and "random (chance)" in printed
    for name in ("baseline", "masra"):  # per-epoch progress of both models, trained side by side
        assert re.search(rf"^{name} +epoch 1/1  loss \d+\.\d+  val MR-mAP \d+\.\d+  HL-mAP \d+\.\d+  elapsed \d+m\d\ds  ETA 0m00s$",
                         printed, flags=re.MULTILINE), printed

    metrics = json.loads((out / "metrics.json").read_text())
    baseline = json.loads((out / "baseline_metrics.json").read_text())
    for result in (metrics, baseline):
        assert set(KEY_METRICS) <= set(result["brief"])
        assert {"HL-min-Fair", "HL-min-Good", "HL-min-VeryGood", "full", "long", "middle", "short"} <= set(result)
    predictions = read_jsonl(out / "predictions.jsonl")
    val = read_jsonl(tiny_dataset_copy / "val.jsonl")
    assert [p["qid"] for p in predictions] == [r["qid"] for r in val]
    for pred, row in zip(predictions, val):
        assert len(pred["pred_saliency_scores"]) == int(row["duration"] / 2)
        scores = [w[2] for w in pred["pred_relevant_windows"]]
        assert scores == sorted(scores, reverse=True)
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert "metrics.png" in pngs and len(pngs) == 1 + min(4, TINY_VAL)
    summary = json.loads((out / "summary.json").read_text())
    assert [v["name"] for v in summary["variants"]] == ["baseline", "masra"]
    assert summary["variants"][1]["parts"] == ["dai", "sora", "sge", "esta", "lrca"]
    assert summary["variants"][1]["metrics"]["MR-full-mAP"] == metrics["brief"]["MR-full-mAP"]
    # the dataset cache was reused, not regenerated
    assert (tiny_dataset_copy / "manifest.json").stat().st_mtime_ns == manifest_before

    # existing results are not clobbered without --force
    assert _demo(out) == 1
    assert "pass --force" in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert _demo(out, "--force", "--parts", "none") == 0
    assert not (out / "baseline_metrics.json").exists()
    assert json.loads((out / "summary.json").read_text())["variants"][0]["parts"] == []


def test_chance_level_is_low_and_reproducible(tiny_dataset_dir):
    rows = read_jsonl(tiny_dataset_dir / "val.jsonl")
    first = chance_metrics(rows, seed=3)
    assert first == chance_metrics(rows, seed=3)
    assert first["brief"]["MR-full-mAP"] < 15
    assert first["brief"]["MR-full-R1@0.7"] < 20
    preds = random_predictions(rows, seed=3)
    assert all(len(p["pred_relevant_windows"]) == 10 for p in preds)
    assert all(w[0] % 2 == 0 and w[1] % 2 == 0 for p in preds for w in p["pred_relevant_windows"])


def test_bad_parts_and_overrides_are_refused_before_any_work(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "x"), "--parts", "dai,foo"]) == 1
    assert "unknown MASRA part" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "y"), "--set", "model.hidden_dimm=64"]) == 1
    assert "model.hidden_dimm" in capsys.readouterr().err
    assert not (tmp_path / "y" / "data").exists()


def test_the_demo_trains_a_narrow_model_without_dropout_inside(tiny_dataset_dir, tmp_path):
    """The demo's budget (docs/demo.md, "Why these settings"): a 64-wide model whose only dropout is
    on its inputs, evaluated after every epoch of the default budget; an override still wins."""
    import torch

    from masra.lab.demo.synthetic import SyntheticDataset
    from masra.lab.demo.training import DEFAULT_EPOCHS, demo_config
    from masra.model import build_model
    from masra.model.dropout import Dropout

    dataset = SyntheticDataset.at(tiny_dataset_dir, json.loads((tiny_dataset_dir / "manifest.json").read_text()))
    cfg = demo_config(dataset, parts="all", seed=0, epochs=DEFAULT_EPOCHS, output_dir=tmp_path / "run")
    model, _ = build_model(cfg, 130, 384, 384)
    assert model.video_proj[-1][-1].out_features == 64  # the last input block's Linear: the model width
    active = sorted(name for name, m in model.named_modules() if isinstance(m, (Dropout, torch.nn.Dropout)) and m.p > 0)
    assert active and all(name.split(".")[0] in ("video_proj", "text_proj") for name in active), active
    assert cfg.train.eval_every == 1  # a fresh val line every epoch of the default budget
    wider = demo_config(dataset, parts="all", seed=0, epochs=DEFAULT_EPOCHS, output_dir=tmp_path / "run",
                        overrides=["model.hidden_dim=128", "model.dropout=0.1"])
    assert (wider.model.hidden_dim, wider.model.dropout) == (128, 0.1)
