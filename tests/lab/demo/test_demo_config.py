"""The demo's config is the packaged ``demo`` YAML plus what the demo fills in: the exact Config that the demo
built in Python before the YAML existed, field by field."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest

from masra.cli.main import main
from masra.config import Config, packaged_configs
from masra.errors import MasraError
from masra.lab.demo.synthetic import SyntheticDataset
from masra.lab.demo.training import demo_config


def _expected(dataset: SyntheticDataset, *, seed: int, epochs: int, output_dir: str) -> Config:
    """docs/demo.md, "How the settings were found": QD-DETR's defaults, a 64-wide model (4 heads, FFN 128,
    LRCA projection 32), input dropout 0.1 and none inside the model, lr 1e-3, batch 8; an evaluation every
    epochs // 4 epochs (1 to 5); the generated dataset's files; every MASRA part on ("all")."""
    cfg = Config(name="masra-demo")
    cfg.data.dataset = "qvhighlights"
    cfg.data.train_path = str(dataset.train_path)
    cfg.data.eval_path = str(dataset.val_path)
    cfg.data.v_feat_dirs = [str(folder) for folder in dataset.video_dirs]
    cfg.data.t_feat_dir = str(dataset.text_dir)
    cfg.data.prior_dir = str(dataset.prior_dir)
    cfg.data.clip_length = 2.0
    cfg.model.hidden_dim, cfg.model.nheads, cfg.model.dim_feedforward = 64, 4, 128
    cfg.model.lrca.proj_dim = 32
    cfg.model.input_dropout, cfg.model.dropout = 0.1, 0.0
    cfg.train.lr, cfg.train.batch_size = 1e-3, 8
    cfg.train.seed, cfg.train.epochs, cfg.train.output_dir = seed, epochs, output_dir
    cfg.train.eval_every = 3
    for part in ("dai", "sge", "sora", "esta", "lrca"):
        getattr(cfg.model, part).enabled = True
    return cfg


def test_the_demo_config_is_the_documented_one_field_by_field(tiny_dataset_dir, tmp_path):
    dataset = SyntheticDataset.at(tiny_dataset_dir, json.loads((tiny_dataset_dir / "manifest.json").read_text()))
    got = demo_config(dataset, parts="all", seed=4, epochs=12, output_dir=tmp_path / "run")
    expected = _expected(dataset, seed=4, epochs=12, output_dir=str(tmp_path / "run"))
    assert dataclasses.asdict(got) == dataclasses.asdict(expected)


def test_the_demo_config_is_listed_and_shown_by_masra_config(capsys):
    assert "demo" in packaged_configs()
    assert main(["config", "list"]) == 0
    assert any(line.split()[0] == "demo" for line in capsys.readouterr().out.splitlines())
    assert main(["config", "show", "demo"]) == 0
    shown = capsys.readouterr().out
    assert "hidden_dim: 64" in shown and "batch_size: 8" in shown


def test_another_backbone_is_its_shipped_layer_on_the_demo_config(tiny_dataset_dir, tmp_path):
    """--backbone B = demo.yaml, then configs/backbones/B.yaml (the backbone's model and losses), then what the
    demo fills in: every other field stays the demo's."""
    dataset = SyntheticDataset.at(tiny_dataset_dir, json.loads((tiny_dataset_dir / "manifest.json").read_text()))
    qd = dataclasses.asdict(demo_config(dataset, parts="all", seed=0, epochs=5, output_dir=tmp_path / "run"))
    moment = demo_config(dataset, parts="all", seed=0, epochs=5, output_dir=tmp_path / "run", backbone="moment_detr")
    expected = copy.deepcopy(qd)
    expected["model"].update(backbone="moment_detr", activation="relu", use_negative_pairs=False)
    assert dataclasses.asdict(moment) == expected
    with pytest.raises(MasraError, match="unknown backbone 'detr'"):
        demo_config(dataset, parts="all", seed=0, epochs=5, output_dir=tmp_path / "run", backbone="detr")
