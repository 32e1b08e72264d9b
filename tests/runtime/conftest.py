"""Tiny checkpoints built from config (no training: weights are the seeded initialisation) and their exports,
baseline and MASRA (every part on), shared by the export and runtime tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from masra.checkpoint import ModelDims, save_checkpoint
from masra.config import Config
from masra.model import build_model
from masra.model.parts import PARTS

V_DIM, T_DIM, SEMANTIC_DIM = 18, 8, 12  # V_DIM: 16 raw + 2 TEF
ENCODER, FINGERPRINT = "clip:tiny-test-encoder", "0123456789abcdef"


@dataclass
class Exported:
    name: str
    checkpoint: Path
    export: Path
    model: torch.nn.Module
    cfg: Config
    dims: ModelDims


def tiny_checkpoint(folder: Path, masra: bool, seed: int = 0) -> tuple[torch.nn.Module, Config, ModelDims]:
    """A checkpoint of a hidden-32 model (every MASRA part on when ``masra``) with seeded random weights."""
    cfg = Config()
    cfg.model.hidden_dim, cfg.model.nheads, cfg.model.dim_feedforward = 32, 4, 64
    cfg.eval.nms_threshold = 0.7  # NMS on, so the runtime's answers go through it too
    for part in PARTS:
        getattr(cfg.model, part.name).enabled = masra
    dims = ModelDims(V_DIM, T_DIM, SEMANTIC_DIM if masra else None, None, ENCODER, FINGERPRINT)
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


@pytest.fixture(scope="session", params=["baseline", "masra"])
def exported(request, tmp_path_factory) -> Exported:
    from masra.export import export_checkpoint

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp(f"export_{request.param}")
    model, cfg, dims = tiny_checkpoint(root / "ckpt", masra=request.param == "masra")
    export_checkpoint(root / "ckpt", root / "export")
    return Exported(request.param, root / "ckpt", root / "export", model, cfg, dims)
