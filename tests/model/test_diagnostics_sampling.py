"""``train.diagnostics_every``: the parts' diagnostics are recorded on one training step in N, never change
training, and each term's epoch mean is over the steps that reported it."""

from __future__ import annotations

import pytest
import torch

from masra.config import Config, validate_config
from masra.errors import MasraError
from masra.train.engine import train_one_epoch
from test_masra_integration import build, with_priors


class _Batches:
    """A fixed list of batches whose ``to`` keeps them as they are."""

    def __init__(self, random_batch) -> None:
        self.batches = [with_priors(random_batch([8, 6, 7], [3, 2, 2], seed=s), [1.0, 1.0, 1.0]) for s in range(3)]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _epoch(small_config, random_batch, every: int) -> tuple[list[float], dict[str, float], list[dict | None]]:
    """(step losses, epoch means, each step's model diagnostics or None) of one epoch with all parts on."""
    torch.manual_seed(0)
    model, criterion = build(small_config, "all")
    recorded: list[dict | None] = []
    forward = model.forward

    def recording_forward(batch):
        out = forward(batch)
        diagnostics = out.get("diagnostics")
        recorded.append(None if diagnostics is None else {k: float(v) for k, v in diagnostics.items()})
        return out

    model.forward = recording_forward
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    torch.manual_seed(1)
    result = train_one_epoch(model, criterion, _Batches(random_batch), optimizer, device=torch.device("cpu"),
                             epoch=0, grad_clip=0.1, progress=False, diagnostics_every=every)
    assert model.record_diagnostics  # evaluation and the next epoch start from the default
    return result.step_losses, result.means, recorded


def test_sampled_diagnostics_leave_training_unchanged(small_config, random_batch):
    every_losses, every_means, every_recorded = _epoch(small_config, random_batch, 1)
    sampled_losses, sampled_means, sampled_recorded = _epoch(small_config, random_batch, 2)
    assert [r is not None for r in every_recorded] == [True, True, True]
    assert [r is not None for r in sampled_recorded] == [True, False, True]
    assert sampled_losses == every_losses  # no loss and no random draw depends on the diagnostics
    assert set(sampled_means) == set(every_means)
    model_keys = {f"diag_{name}" for name in every_recorded[0]}
    assert {"diag_sge_gate", "diag_sora_attention_moved", "diag_dai_entry_entropy"} <= model_keys
    for key, value in every_means.items():
        if key in model_keys:  # the mean over steps 1 and 3 of the same training
            expected = (every_recorded[0][key[5:]] + every_recorded[2][key[5:]]) / 2
            assert sampled_means[key] == pytest.approx(expected, rel=1e-6), key
        else:  # losses and the criterion's own statistics: every step
            assert sampled_means[key] == pytest.approx(value, rel=1e-6), key


def test_diagnostics_every_must_be_positive():
    cfg = Config()
    cfg.train.diagnostics_every = 0
    with pytest.raises(MasraError, match="train.diagnostics_every"):
        validate_config(cfg)
