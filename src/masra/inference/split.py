"""Prediction and evaluation of a whole annotation split with a checkpoint (``masra predict`` / ``masra
evaluate --checkpoint``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from masra.data.paths import refuse_existing
from masra.errors import MasraError
from masra.inference.loading import load_model
from masra.model.split_inference import SplitPredictions, predict_annotations


def predict_split(
    checkpoint: str | Path,
    *,
    split: str | None = None,
    annotations: str | Path | None = None,
    device: str = "auto",
    config_overrides: Sequence[str] = (),
    progress: bool = True,
) -> SplitPredictions:
    """Submission rows (and metrics when ground truth is known) for a configured split or an annotation file
    (masra.model.split_inference, shared with the ONNX runtime; the rows from the evaluation loop)."""
    from torch.utils.data import DataLoader

    from masra.data.dataset import GroundingDataset, collate
    from masra.device import resolve_device
    from masra.model.prediction import predict_rows

    torch_device = resolve_device(device)
    model, cfg, dims = load_model(checkpoint, torch_device, config_overrides)

    def rows_of(records: list[Any]) -> list[dict[str, Any]]:
        # Features are checked against the model's input dims (checkpoint metadata); priors are a training-time
        # signal, inference never reads them.
        dataset = GroundingDataset(records, dataclasses.replace(cfg.data, prior_dir=None), train=False,
                                   input_dims=(dims.v_feat_dim, dims.t_feat_dim))
        loader = DataLoader(dataset, batch_size=cfg.train.eval_batch_size, shuffle=False, collate_fn=collate,
                            num_workers=cfg.data.num_workers)
        return predict_rows(model, loader, cfg, device=torch_device, progress=progress)

    return predict_annotations(rows_of, cfg.data, split=split, annotations=annotations)


def evaluate_checkpoint(
    checkpoint: str | Path,
    split: str,
    out: str | Path | None = None,
    config_overrides: Sequence[str] | None = None,
    *,
    force: bool = False,
    device: str = "auto",
) -> dict[str, Any]:
    """Official metrics of a checkpoint on the configured ``split`` (val or test); written to ``out`` if given."""
    refuse_existing(out, force)
    result = predict_split(checkpoint, split=split, device=device, config_overrides=config_overrides or ())
    if result.metrics is None:
        raise MasraError(f"the {split} annotations have no labels; use `masra predict` for a submission file",
                         file=result.records[0].file)
    if out is not None:
        from masra.data.jsonl import write_json

        write_json(out, result.metrics, indent=4)
    return result.metrics
