"""`masra train --init-from RUN`: a new run starts from a converted QD-DETR checkpoint's weights, with the
MASRA parts switched on now freshly initialised and reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from masra.cli.main import main
from masra.config import load_config, set_masra_parts
from masra.errors import MasraError
from masra.model import build_model
from masra.train.init_from import load_initial_weights


def _data(root: Path) -> list[str]:
    """Two training videos with 14-d clip features (16 with TEF) and 10-d query tokens, like the fixture."""
    rng = np.random.default_rng(0)
    (root / "v").mkdir()
    (root / "t").mkdir()
    rows = []
    for qid in range(4):
        vid = f"v{qid}"
        np.savez(root / "v" / f"{vid}.npz", features=rng.normal(size=(10, 14)).astype(np.float32))
        np.savez(root / "t" / f"qid{qid}.npz", last_hidden_state=rng.normal(size=(4, 10)).astype(np.float32))
        rows.append({"qid": qid, "query": "q", "duration": 20.0, "vid": vid, "relevant_windows": [[4.0, 8.0]],
                     "relevant_clip_ids": [2, 3], "saliency_scores": [[1, 2, 3], [2, 3, 4]]})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = [f"data.train_path={root / 'train.jsonl'}", f"data.v_feat_dirs=[{root / 'v'}]",
                f"data.t_feat_dir={root / 't'}", "train.epochs=1", "train.batch_size=2", "train.device=cpu"]
    return [arg for setting in settings for arg in ("--set", setting)]


def test_baseline_weights_load_and_masra_parts_start_fresh(converted_qd_run):
    weights = load_file(str(converted_qd_run / "last" / "model.safetensors"))
    cfg = set_masra_parts(load_config(converted_qd_run / "config.yaml"), "sora,lrca")
    torch.manual_seed(0)
    model, _ = build_model(cfg, 16, 10)
    torch.manual_seed(0)
    untouched, _ = build_model(cfg, 16, 10)
    report = load_initial_weights(model, converted_qd_run)
    state = model.state_dict()
    assert set(report.loaded) == set(weights) and report.unused == []
    assert report.fresh and all(k.startswith(("sora.", "lrca.")) for k in report.fresh)
    for key in report.loaded:
        torch.testing.assert_close(state[key], weights[key], rtol=0, atol=0)
    for key in report.fresh:
        torch.testing.assert_close(state[key], untouched.state_dict()[key], rtol=0, atol=0)


def test_a_different_width_is_refused(converted_qd_run):
    cfg = load_config(converted_qd_run / "config.yaml", ["model.hidden_dim=64"])
    model, _ = build_model(cfg, 16, 10)
    with pytest.raises(MasraError, match="shapes differ"):
        load_initial_weights(model, converted_qd_run)


def test_train_cli_starts_a_new_run_from_a_converted_checkpoint(converted_qd_run, tmp_path):
    overrides = _data(tmp_path)
    out = tmp_path / "masra_run"
    assert main(["train", "--init-from", str(converted_qd_run), "--parts", "sora", "--output-dir", str(out), "--no-progress",
                 *overrides]) == 0
    report = json.loads((out / "init_from.json").read_text())
    assert report["fresh"] and all(k.startswith("sora.") for k in report["fresh"])
    assert "global_token" in report["loaded"] and report["unused"] == []
    assert "initialised from" in (out / "train.log").read_text()
    assert (out / "last" / "model.safetensors").is_file()
    assert main(["train", "--init-from", str(converted_qd_run), "--resume", str(out), "--output-dir", str(out)]) == 1
