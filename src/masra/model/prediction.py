"""The evaluation loop: a model's outputs over a loader, and the official submission rows they give.

Shared by training (evaluation after an epoch) and inference (``masra predict`` / ``masra evaluate``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from tqdm import tqdm

from masra.config import Config
from masra.data.batch import GroundingBatch

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on CPU or CUDA; a no-op context for ``amp == "none"``."""
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def to_float32(value: Any) -> Any:
    """Model outputs as float32, so losses and the matcher never run in reduced precision."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: to_float32(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_float32(v) for v in value]
    return value


def iterate_predictions(
    model: torch.nn.Module,
    loader: Iterable[GroundingBatch],
    *,
    device: torch.device,
    amp: str = "none",
    progress: bool = False,
) -> Iterator[tuple[dict[str, Any], GroundingBatch]]:
    """Model outputs (float32, on the host) with their batch, in loader order, in eval mode without gradients."""
    model.eval()
    with torch.inference_mode():
        for batch in tqdm(loader, desc="predict", unit="batch", disable=not progress, leave=False):
            with autocast(device, amp):
                outputs = model(batch.to(device, non_blocking=True))
            yield to_float32(outputs), batch


def predict_rows(
    model: torch.nn.Module,
    loader: Iterable[GroundingBatch],
    cfg: Config,
    *,
    device: torch.device,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Official submission rows for every sample of ``loader`` (dataset post-processing from ``cfg.eval``)."""
    from masra.model.postprocess import SUBMISSION_OUTPUTS, outputs_to_submission

    rows: list[dict[str, Any]] = []
    for outputs, batch in iterate_predictions(model, loader, device=device, amp=cfg.train.amp, progress=progress):
        host = {key: outputs[key].cpu().numpy() for key in SUBMISSION_OUTPUTS}
        rows.extend(outputs_to_submission(host, batch.meta, cfg.eval, cfg.data.clip_length))
    return rows
