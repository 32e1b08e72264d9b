"""Tiny checkpoints and their exports, shared by the export and runtime tests: built from config (no training:
weights are the seeded initialisation) on each backbone (model.backbone), MASRA parts off and every part on, and
the anchors' fixture checkpoints (made by QD-DETR's, Moment-DETR's and CG-DETR's own code, tests/fixtures)
converted by ``masra convert``; and tiny runs trained for one epoch on tests/train/tiny_data.py's data set
(``trained``)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from required import in_ci

from masra.checkpoint import ModelDims, save_checkpoint
from masra.cli.main import main
from masra.config import Config, apply_overrides
from masra.inference.loading import load_model
from masra.model import build_model
from masra.model.parts import PARTS
from train.tiny_data import MASRA_ALL, make_tiny_dataset, tiny_config

V_DIM, T_DIM, SEMANTIC_DIM = 18, 8, 12  # V_DIM: 16 raw + 2 TEF
ENCODER, FINGERPRINT = "clip:tiny-test-encoder", "0123456789abcdef"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# The settings a backbone needs besides the tiny width (CG-DETR: fewer dummies and prototypes, for speed).
BACKBONE_SETTINGS = {
    "qd_detr": [],
    "moment_detr": ["model.use_negative_pairs=false"],
    "cg_detr": ["model.cg_detr.num_dummies=3", "model.cg_detr.prompt_bank=4"],
}
# The `exported` fixture's checkpoints: name -> (backbone, MASRA parts on, converted from the anchor's fixture).
EXPORTS = {
    "baseline": ("qd_detr", False, False),
    "masra": ("qd_detr", True, False),
    "qd-detr": ("qd_detr", False, True),
    "moment-detr": ("moment_detr", False, True),
    "masra-moment-detr": ("moment_detr", True, False),
    "cg-detr": ("cg_detr", False, True),
    "masra-cg-detr": ("cg_detr", True, False),
}


@dataclass
class Exported:
    name: str  # a key of EXPORTS
    checkpoint: Path
    export: Path
    model: torch.nn.Module
    cfg: Config
    dims: ModelDims
    data: dict[str, Path] | None = None  # a trained run's data set (tiny_data.make_tiny_dataset's paths)

    @property
    def raw_video_dim(self) -> int:
        """The video feature dim a caller gives (before TEF)."""
        return self.dims.v_feat_dim - (2 if self.cfg.data.use_tef else 0)


def tiny_checkpoint(
    folder: Path, masra: bool, seed: int = 0, *, dims: ModelDims | None = None, max_v_l: int | None = None,
    backbone: str = "qd_detr",
) -> tuple[torch.nn.Module, Config, ModelDims]:
    """A checkpoint of a hidden-32 model on ``backbone`` (every MASRA part on when ``masra``) with seeded random
    weights; ``dims`` default to V_DIM / T_DIM and a made-up encoder record, ``max_v_l`` to the config's."""
    cfg = apply_overrides(Config(), [f"model.backbone={backbone}", *BACKBONE_SETTINGS[backbone]])
    cfg.model.hidden_dim, cfg.model.nheads, cfg.model.dim_feedforward = 32, 4, 64
    cfg.eval.nms_threshold = 0.7  # NMS on, so the runtime's answers go through it too
    if max_v_l is not None:
        cfg.data.max_v_l = max_v_l
    for part in PARTS:
        getattr(cfg.model, part.name).enabled = masra
    dims = dims or ModelDims(V_DIM, T_DIM, SEMANTIC_DIM if masra else None, None, ENCODER, FINGERPRINT)
    torch.manual_seed(seed)
    model, _ = build_model(cfg, dims.v_feat_dim, dims.t_feat_dim, dims.semantic_dim)
    with torch.no_grad():
        for param in model.parameters():  # opens SGE's nearly closed gate, moves SORA's β: the parts act
            param.add_(0.05 * torch.randn_like(param))
        # Spread the moment scores (an untrained head gives all queries nearly one score, and ranks that differ
        # in the 7th digit would compare the two back ends' rounding, not their answers).
        model.class_head.weight.mul_(8.0)
    save_checkpoint(folder, model=model, cfg=cfg, dims=dims, state={})
    return model.eval(), cfg, dims


def runtime_python() -> str:
    """The interpreter the torch-free scripts run in: MASRA_RUNTIME_PYTHON, the venv without torch that `make
    test` builds (Makefile runtime-venv), else this one (the scripts make torch unimportable). Under CI=true
    the torch-free venv is required."""
    python = os.environ.get("MASRA_RUNTIME_PYTHON")
    if python:
        return python
    if in_ci():
        pytest.fail("MASRA_RUNTIME_PYTHON is not set; CI=true, so the torch-free venv is required (`make test` "
                    "builds it)", pytrace=False)
    return sys.executable


def converted_anchor(backbone: str, folder: Path) -> tuple[torch.nn.Module, Config, ModelDims]:
    """The anchor's fixture checkpoint of ``backbone`` (tests/fixtures/BACKBONE) converted into the run folder
    ``folder`` (its checkpoint: ``folder/last``)."""
    checkpoint = FIXTURES / backbone / "model_best.ckpt"
    assert main(["convert", backbone.replace("_", "-"), str(checkpoint), "--out", str(folder)]) == 0
    model, cfg, dims = load_model(folder, "cpu")
    return model.eval(), cfg, dims


@pytest.fixture(scope="session", params=list(EXPORTS))
def exported(request, tmp_path_factory) -> Exported:
    from masra.export import export_checkpoint

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp(f"export_{request.param}")
    backbone, masra, converted = EXPORTS[request.param]
    if converted:
        model, cfg, dims = converted_anchor(backbone, root / "ckpt")
    else:
        model, cfg, dims = tiny_checkpoint(root / "ckpt", masra=masra, backbone=backbone)
    assert cfg.model.backbone == backbone
    export_checkpoint(root / "ckpt", root / "export")
    return Exported(request.param, root / "ckpt", root / "export", model, cfg, dims)


@pytest.fixture(scope="session", params=["baseline", "masra"])
def trained(request, tmp_path_factory) -> Exported:
    """A tiny run (tiny_data.tiny_config; MASRA: every part on, with the data set's priors) trained for one epoch
    (two steps) on tiny_data's planted moments, NMS on; its last checkpoint, and that run exported."""
    from masra.export import export_checkpoint
    from masra.train.trainer import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp(f"trained_{request.param}")
    paths = make_tiny_dataset(root / "data")
    parts = [f"data.prior_dir={paths['priors']}", *MASRA_ALL] if request.param == "masra" else []
    result = train(tiny_config(paths, root / "run", *parts, "train.epochs=1", "eval.nms_threshold=0.7"),
                   progress=False)
    export_checkpoint(result.run_dir, root / "export")
    model, cfg, dims = load_model(result.run_dir, "cpu")
    return Exported(f"trained-{request.param}", result.run_dir / "last", root / "export", model.eval(), cfg, dims,
                    data=paths)
