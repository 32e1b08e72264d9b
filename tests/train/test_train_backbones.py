"""`masra train --parts all` on the Moment-DETR and CG-DETR backbones: every MASRA part attaches (docs/method.md,
"Parts on each backbone"), trains with the backbone's own losses, and the run predicts."""

from __future__ import annotations

import json
import re

import pytest

from masra.cli.main import main
from masra.config import save_config
from masra.inference import load_model
from tiny_data import tiny_config

# backbone -> (its settings, the modules it has with every part on, its own loss terms besides the set ones)
BACKBONES = {
    "moment_detr": (["model.use_negative_pairs=false", "model.activation=relu"], {"t2v_encoder"}, ()),
    "cg_detr": (["model.cg_detr.num_dummies=3", "model.cg_detr.prompt_bank=4"], {"t2v_encoder", "dummy_encoder"},
                ("loss_ms_align", "loss_distill", "loss_orthogonal_dummy")),
}


@pytest.mark.parametrize("backbone", BACKBONES)
def test_all_parts_train_on_the_backbone_and_the_run_predicts(tiny_paths, tmp_path, backbone):
    settings, modules, own_terms = BACKBONES[backbone]
    config = tmp_path / "tiny.yaml"
    save_config(tiny_config(tiny_paths, tmp_path / "unused", "train.epochs=2", f"data.prior_dir={tiny_paths['priors']}",
                            "model.sora.band=4", "loss.lrca_band=4", "model.lrca.proj_dim=16",
                            "model.dai.codebook_size=4", f"model.backbone={backbone}", *settings), config)
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(config), "--parts", "all", "--output-dir", str(run_dir), "--no-progress"]) == 0
    log = (run_dir / "train.log").read_text()
    for term in ("loss_dai_relevance", "loss_sge_caption", "loss_esta", "loss_lrca", "loss_saliency", *own_terms):
        values = [float(v) for v in re.findall(rf"\b{term} ([0-9.]+)", log)]
        assert values and all(v == v for v in values), term  # logged every epoch, never NaN
    model, cfg, _ = load_model(run_dir / "best", "cpu")
    assert cfg.model.backbone == backbone
    assert {"dai_codebook", "sora", "sge", "esta", "lrca", *modules} <= {name for name, _ in model.named_children()}
    out = tmp_path / "preds.jsonl"
    assert main(["predict", "--checkpoint", str(run_dir / "best"), "--split", "val", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and all(row["pred_relevant_windows"] and row["pred_saliency_scores"] for row in rows)
