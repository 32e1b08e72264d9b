"""A few training steps on fixed samples, in one process or as one rank of a gloo process group.

Used by test_train_ddp_equivalence.py: each rank (or the single process) trains with the package's own
pieces (``build_model``, ``wrap_model``, ``train_one_epoch``, AdamW as the trainer builds it) and saves its
parameters after every step, so the test can compare ranks with each other and with one process.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from masra.data.dataset import GroundingDataset, collate
from masra.data.splits import load_records
from masra.model import build_model
from masra.train.distributed import cleanup, init_distributed, wrap_model
from masra.train.engine import train_one_epoch
from masra.train.seeding import seed_everything
from tiny_data import tiny_config

# No dropout anywhere, so every process draws nothing random during a step.
NO_DROPOUT = ("model.dropout=0", "model.input_dropout=0")


def run_steps(rank: int, world: int, port: int | None, paths: dict[str, Path], overrides: list[str],
              steps: list[list[int]], out: Path) -> None:
    """Train ``len(steps)`` steps; step s uses samples ``steps[s]``, split into ``world`` equal contiguous parts
    (rank r takes part r). Writes ``out/rank{rank}.pt``: the parameters after each step."""
    if world > 1:  # a spawned rank; one process runs in the test's own process and leaves its environment alone
        os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    cfg = tiny_config(paths, out / "unused", *NO_DROPOUT, *overrides)
    ctx = init_distributed("cpu")
    try:
        seed_everything(cfg.train.seed + rank)
        dataset = GroundingDataset(load_records(cfg.data.train_path, cfg.data), cfg.data, train=True,
                                   seed=cfg.train.seed)
        v_dim, t_dim, prior_dim = dataset.feature_dims()
        model, criterion = build_model(cfg, v_dim, t_dim, prior_dim)
        params = [p for p in list(model.parameters()) + list(criterion.parameters()) if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        ddp_model = wrap_model(model, ctx)
        history = []
        for indices in steps:
            part = len(indices) // world
            batch = collate([dataset[i] for i in indices[rank * part:(rank + 1) * part]])
            train_one_epoch(ddp_model, criterion, [batch], optimizer, device=ctx.device, epoch=0,
                            grad_clip=cfg.train.grad_clip, progress=False)
            history.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        torch.save(history, out / f"rank{rank}.pt")
    finally:
        cleanup(ctx)
