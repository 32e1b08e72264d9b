"""Learning curves from the runs' per-epoch evaluations, and ``masra ablate`` on any training config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TINY_TRAIN, TINY_VAL

from masra.data.jsonl import write_json
from masra.lab.demo.ablation import run_ablation
from masra.lab.demo.curves import CURVE_METRICS, mean_curves, read_run_curve, write_curves
from masra.lab.demo.training import KEY_METRICS, VariantResult, enabled_parts
from masra.errors import MasraError


def _value(variant: str, seed: int, epoch: int, metric: str) -> float:
    return 10.0 * len(variant) + seed + 2.0 * epoch + CURVE_METRICS.index(metric) if metric in CURVE_METRICS else 1.0


def _write_evals(run_dir: Path, variant: str, seed: int, epochs: int, split: str = "val") -> None:
    for epoch in range(1, epochs + 1):
        brief = {key: _value(variant, seed, epoch, key) for key in KEY_METRICS}
        write_json(run_dir / "eval" / f"epoch_{epoch:04d}_{split}_metrics.json", {"brief": brief})


class EvalWritingTrainer:
    """Stands in for training: leaves one evaluation file per epoch, as the trainer does, and records configs."""

    def __init__(self):
        self.configs = []

    def __call__(self, name, cfg):
        self.configs.append(cfg)
        run_dir = Path(cfg.train.output_dir)
        _write_evals(run_dir, name, cfg.train.seed, cfg.train.epochs, cfg.data.eval_split_name)
        brief = {key: _value(name, cfg.train.seed, cfg.train.epochs, key) for key in KEY_METRICS}
        return VariantResult(name, enabled_parts(cfg), run_dir, cfg.train.epochs, {"brief": brief}, None, 1.0,
                             last_epoch=cfg.train.epochs, last_brief=brief)


def test_curve_points_are_mean_and_std_over_seeds_per_epoch(tmp_path):
    for seed in (0, 1, 2):
        _write_evals(tmp_path / f"seed{seed}", "all", seed, 3)
    (tmp_path / "seed2" / "eval" / "epoch_0003_val_metrics.json").unlink()  # an interrupted run
    runs = [read_run_curve(tmp_path / f"seed{s}", "val") for s in (0, 1, 2)]
    assert sorted(runs[0]) == [1, 2, 3] and sorted(runs[2]) == [1, 2]
    curves = mean_curves(runs)
    points = curves["MR-full-mAP"]
    assert [p["epoch"] for p in points] == [1, 2]  # only epochs every seed evaluated
    values = [_value("all", s, 2, "MR-full-mAP") for s in (0, 1, 2)]
    assert points[1]["mean"] == pytest.approx(np.mean(values))
    assert points[1]["std"] == pytest.approx(np.std(values, ddof=1))
    assert read_run_curve(tmp_path / "missing", "val") == {}


def test_written_curves_have_a_table_and_a_plot(tmp_path):
    for variant in ("baseline", "all"):
        for seed in (0, 1):
            _write_evals(tmp_path / variant / f"seed{seed}", variant, seed, 4)
    dirs = {v: [tmp_path / v / f"seed{s}" for s in (0, 1)] for v in ("baseline", "all")}
    write_curves(tmp_path / "out", dirs, split="val", caption="test curves")
    text = (tmp_path / "out" / "curves.md").read_text()
    assert "**MR-full-mAP** (val, per epoch)" in text and "**HL-min-VeryGood-mAP** (val, per epoch)" in text
    epoch3 = [_value("baseline", s, 3, "HL-min-VeryGood-mAP") for s in (0, 1)]
    assert f"| 3 | {np.mean(epoch3):.2f} ± {np.std(epoch3, ddof=1):.2f} |" in text
    png = (tmp_path / "out" / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    saved = json.loads((tmp_path / "out" / "curves.json").read_text())
    assert len(saved["curves"]["all"]["MR-full-mAP"]) == 4


def test_ablation_writes_curves_and_evaluates_every_epoch(tiny_dataset_copy):
    out = tiny_dataset_copy.parent
    trainer = EvalWritingTrainer()
    run_ablation(out, seeds=[0, 1], epochs=3, n_train=TINY_TRAIN, n_val=TINY_VAL, variants=["baseline", "all"],
                 trainer=trainer)
    assert {cfg.train.eval_every for cfg in trainer.configs} == {1}
    curves = json.loads((out / "curves.json").read_text())["curves"]
    assert [p["epoch"] for p in curves["baseline"]["MR-full-mAP"]] == [1, 2, 3]
    assert (out / "curves.png").is_file()


def test_a_finished_run_of_another_config_is_refused_not_reused(tiny_dataset_copy):
    out = tiny_dataset_copy.parent
    common = {"seeds": [0], "epochs": 2, "n_train": TINY_TRAIN, "n_val": TINY_VAL, "variants": ["all"]}
    run_ablation(out, trainer=EvalWritingTrainer(), **common)
    again = EvalWritingTrainer()
    run_ablation(out, trainer=again, **common)
    assert again.configs == []  # same config: reused
    with pytest.raises(MasraError, match=r"another config or dataset \(differs in: config\.loss\.aux_ramp_epochs\)"):
        run_ablation(out, trainer=EvalWritingTrainer(), overrides=["loss.aux_ramp_epochs=2"], **common)
    # a result recorded before a config field existed is still the same run (the field kept its default)
    result_path = out / "runs" / "all" / "seed0" / "result.json"
    result = json.loads(result_path.read_text())
    del result["fingerprint"]["config"]["loss"]["aux_chance_norm"]
    result_path.write_text(json.dumps(result))
    unchanged = EvalWritingTrainer()
    run_ablation(out, trainer=unchanged, **common)
    assert unchanged.configs == []


def test_runs_copied_with_their_generated_data_into_another_out_are_reused(tiny_dataset_copy, tmp_path):
    """The generated dataset's identity stands for its paths: an ablation copied elsewhere (to extend it with more
    variants, say) reuses its finished runs instead of refusing them for their old data paths."""
    out = tiny_dataset_copy.parent
    common = {"seeds": [0], "epochs": 2, "n_train": TINY_TRAIN, "n_val": TINY_VAL, "variants": ["all"]}
    run_ablation(out, trainer=EvalWritingTrainer(), **common)
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    again = EvalWritingTrainer()
    run_ablation(moved, trainer=again, **common)
    assert again.configs == []


def test_ablate_takes_a_users_training_config(tmp_path, tiny_dataset_dir):
    data = tiny_dataset_dir
    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump({
        "base": "qvhighlights",
        "data": {"train_path": str(data / "train.jsonl"), "eval_path": str(data / "val.jsonl"),
                 "v_feat_dirs": [str(data / "video")], "t_feat_dir": str(data / "text"),
                 "prior_dir": str(data / "priors")},
        "train": {"epochs": 3, "lr": 3e-4},
    }))
    trainer = EvalWritingTrainer()
    out = tmp_path / "ablation"
    table = run_ablation(out, seeds=[4], variants=["baseline", "esta"], trainer=trainer, config=str(config))
    assert not (out / "data").exists()  # nothing generated: the config's own data
    baseline, esta = trainer.configs
    assert baseline.data.train_path == str(data / "train.jsonl") and baseline.train.lr == 3e-4
    assert baseline.train.epochs == 3 and baseline.train.seed == 4  # the config's budget, the ablation's seed
    assert enabled_parts(baseline) == [] and enabled_parts(esta) == ["esta"]
    assert esta.train.output_dir == str(out / "runs" / "esta" / "seed4")
    assert table["source"] == f"config {config}"
    assert (out / "curves.md").is_file()
    with pytest.raises(MasraError, match="comes from the config"):
        run_ablation(out, seeds=[4], trainer=trainer, config=str(config), data="hard")
