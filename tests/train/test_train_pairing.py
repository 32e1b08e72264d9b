"""Two runs of one seed that differ only in their MASRA parts are paired: the baseline's modules start from the
same weights, the training data comes in the same order with the same targets, and the training randomness
(dropout masks) starts from the same generator state, however many random numbers the parts' construction drew.
The ablation's paired differences (masra ablate) rest on this."""

from __future__ import annotations

import pytest
import torch

import masra.model
import masra.train.trainer as trainer
from masra.train.trainer import train
from tiny_data import MASRA_ALL, tiny_config


BUILD_MODEL, TRAIN_ONE_EPOCH = masra.model.build_model, trainer.train_one_epoch


class RecordingLoader:
    """The epoch's loader, noting the qids of every batch it yields."""

    def __init__(self, loader, batches: list[list[int]]):
        self.loader, self.batches = loader, batches

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            self.batches.append([meta["qid"] for meta in batch.meta])
            yield batch


def _observe(monkeypatch, cfg) -> dict:
    """Train ``cfg`` and return the model's initial weights, the batches it saw and the RNG state at each epoch."""
    seen: dict = {"batches": [], "rng": [], "spans": []}

    def recording_build(*args, **kwargs):
        model, criterion = BUILD_MODEL(*args, **kwargs)
        seen["weights"] = {k: v.clone() for k, v in model.state_dict().items()}
        return model, criterion

    def recording_epoch(model, criterion, loader, *args, **kwargs):
        seen["rng"].append(torch.get_rng_state())
        return TRAIN_ONE_EPOCH(model, criterion, RecordingLoader(loader, seen["batches"]), *args, **kwargs)

    monkeypatch.setattr(masra.model, "build_model", recording_build)
    monkeypatch.setattr(trainer, "train_one_epoch", recording_epoch)
    train(cfg, progress=False)
    return seen


COMMON = ("train.epochs=2", "data.eval_path=")
# Every part but DAI: these add modules after the baseline's; DAI replaces the baseline's text cross-attention.
ADDED_PARTS = [o for o in MASRA_ALL if not o.startswith("model.dai.")]


def _assert_same_baseline_weights(baseline: dict, variant: dict) -> None:
    assert len(variant["weights"]) > len(baseline["weights"])  # the parts add modules...
    # ...after the baseline's, which start identical; DAI's attention replaces the baseline's T2V attention,
    # whose weights the variant no longer has
    shared = [name for name in baseline["weights"] if name in variant["weights"]]
    assert all(".cross_attn." in name for name in baseline["weights"] if name not in variant["weights"])
    differ = [name for name in shared if not torch.equal(variant["weights"][name], baseline["weights"][name])]
    assert differ == []


def test_variants_of_one_seed_see_the_same_data_weights_and_random_stream(tiny_paths, tmp_path, monkeypatch):
    common = (*COMMON, f"data.prior_dir={tiny_paths['priors']}")
    baseline = _observe(monkeypatch, tiny_config(tiny_paths, tmp_path / "baseline", *common))
    parts = _observe(monkeypatch, tiny_config(tiny_paths, tmp_path / "parts", *common, *ADDED_PARTS))

    _assert_same_baseline_weights(baseline, parts)
    assert baseline["batches"] == parts["batches"] and len(baseline["batches"]) == 4  # 8 samples, batch 4, 2 epochs
    assert baseline["batches"][:2] != baseline["batches"][2:]  # reshuffled each epoch
    assert torch.equal(baseline["rng"][0], parts["rng"][0])  # the parts' initialisation drew no dropout mask

    other_seed = _observe(monkeypatch, tiny_config(tiny_paths, tmp_path / "seed8", *common, "train.seed=8"))
    assert other_seed["batches"] != baseline["batches"]


def test_dai_leaves_the_baseline_initialisation_unchanged(tiny_paths, tmp_path, monkeypatch):
    common = (*COMMON, f"data.prior_dir={tiny_paths['priors']}")
    baseline = _observe(monkeypatch, tiny_config(tiny_paths, tmp_path / "baseline", *common))
    full = _observe(monkeypatch, tiny_config(tiny_paths, tmp_path / "all", *common, *MASRA_ALL))
    assert torch.equal(baseline["rng"][0], full["rng"][0]) and baseline["batches"] == full["batches"]
    _assert_same_baseline_weights(baseline, full)
