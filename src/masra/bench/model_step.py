"""``masra bench model``: one training step (forward + loss + backward) and one inference forward of the
baseline versus MASRA with all parts on, same data, same process."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from masra.bench.batches import synthetic_batch
from masra.bench.measure import Measurement, measure
from masra.config import Config, set_masra_parts
from masra.model import build_model


@dataclass
class ModelRow:
    variant: str  # "baseline" or "masra"
    parameters: int
    train_step: Measurement
    inference: Measurement


def _bench_variant(
    parts: str, batch_size: int, clips: int, device: torch.device, repeats: int, prior_dim: int
) -> ModelRow:
    cfg = set_masra_parts(Config(), parts)
    v_dim, t_dim = 2818, 512  # QVHighlights SlowFast + CLIP with TEF, CLIP text
    torch.manual_seed(0)
    model, criterion = build_model(cfg, v_dim, t_dim, prior_dim)
    model.to(device)
    batch = synthetic_batch(batch_size, clips, 24, v_dim, t_dim, prior_dim).to(device)
    # Inference sees no priors (a trained model never needs them).
    query_only = dataclasses.replace(
        batch, has_priors=None, caption_emb=None, caption_mask=None, event_emb=None, event_spans=None, event_mask=None
    )

    def train_step() -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        criterion(model(batch), batch)["loss"].backward()

    def inference() -> None:
        model.eval()
        with torch.no_grad():
            model(query_only)

    return ModelRow(
        variant="baseline" if parts == "none" else "masra",
        parameters=sum(p.numel() for p in model.parameters()),
        train_step=measure(train_step, device, repeats=repeats),
        inference=measure(inference, device, repeats=repeats),
    )


def bench_model(
    *, batch_size: int = 32, clips: int = 75, device: torch.device, repeats: int = 3, prior_dim: int = 384
) -> list[ModelRow]:
    return [_bench_variant(parts, batch_size, clips, device, repeats, prior_dim) for parts in ("none", "all")]
