"""Process-group setup for ``torchrun`` (DDP): one process per device, env:// rendezvous.

A plain ``masra train`` (no WORLD_SIZE in the environment, or WORLD_SIZE=1) runs as a single process and never
touches torch.distributed; the same code path serves both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from masra.device import resolve_device


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_name: str) -> DistContext:
    """Join the process group torchrun described in the environment (nccl on CUDA, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank, field="train.device")
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def wrap_model(model: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """``model`` inside DistributedDataParallel when ``ctx`` has several processes, else ``model`` itself.

    ``find_unused_parameters=True``: a batch without priors leaves the MASRA heads that read them without a
    gradient, and a saliency-only dataset never uses the moment decoder; DDP then reduces zeros for them.
    """
    if not ctx.enabled:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def broadcast_object(ctx: DistContext, value: Any) -> Any:
    """Rank 0's ``value`` on every rank (e.g. the early-stop decision, which only rank 0 can make)."""
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(ctx: DistContext, value: Any) -> list[Any]:
    """``value`` from every rank, in rank order, on every rank."""
    if not ctx.enabled:
        return [value]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, value)
    return out


def mean_across_ranks(ctx: DistContext, values: dict[str, float]) -> dict[str, float]:
    """Average logged scalars over the ranks that report them (a rank whose batches had no priors, for
    example, has no MASRA loss terms)."""
    if not ctx.enabled:
        return values
    reported: dict[str, list[float]] = {}
    for rank_values in gather_objects(ctx, values):
        for key, value in rank_values.items():
            reported.setdefault(key, []).append(value)
    return {key: sum(v) / len(v) for key, v in reported.items()}


def cleanup(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
