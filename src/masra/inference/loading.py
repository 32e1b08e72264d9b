"""A checkpoint's model rebuilt for inference: config and dims from the checkpoint, weights loaded."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from masra.checkpoint import ModelDims, find_checkpoint, load_weights, read_checkpoint_info
from masra.config import Config, apply_overrides, validate_config


def load_model(
    checkpoint: str | Path, device: str | torch.device = "cpu", config_overrides: Sequence[str] = ()
) -> tuple[torch.nn.Module, Config, ModelDims]:
    """Rebuild the model of a checkpoint folder from its config and load its weights (eval mode)."""
    from masra.model import build_model

    folder = find_checkpoint(checkpoint)
    cfg, dims, _ = read_checkpoint_info(folder)
    apply_overrides(cfg, list(config_overrides))
    validate_config(cfg)
    model, _ = build_model(cfg, dims.v_feat_dim, dims.t_feat_dim, dims.semantic_dim)
    load_weights(folder, model)
    model.to(torch.device(device)).eval()
    return model, cfg, dims
