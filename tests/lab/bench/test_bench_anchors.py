"""``masra bench model`` against each backbone's anchor: masra's rows build the anchor's released model, and the
anchor's code is called as its own train.py and inference.py call it (a stand-in checkout records the calls; the
real checkouts are not part of the tests)."""

from __future__ import annotations

import sys

import pytest
import torch

from lab.bench.anchor_stand_in import forget_stand_in, write_stand_in
from masra.config import Config, load_config
from masra.lab.bench.anchor_reference import ANCHORS, anchor_steps
from masra.lab.bench.batches import synthetic_batch
from masra.lab.bench.model_step import BACKBONE_CONFIGS, T_DIM, V_DIM, StepSpec, build_steps

# masra's setting -> the anchor's option of the same architecture
SHARED = {"hidden_dim": "hidden_dim", "nheads": "nheads", "dim_feedforward": "dim_feedforward",
          "enc_layers": "enc_layers", "dec_layers": "dec_layers", "num_queries": "num_queries", "dropout": "dropout",
          "input_dropout": "input_dropout", "n_input_proj": "n_input_proj",
          "contrastive_align": "contrastive_align_loss"}
CG_DETR = {"t2v_layers": "t2v_layers", "cg_detr.num_dummies": "num_dummies", "cg_detr.dummy_layers": "dummy_layers",
           "cg_detr.sentence_layers": "sent_layers", "cg_detr.moment_layers": "moment_layers",
           "cg_detr.prompt_bank": "total_prompts", "cg_detr.prompts": "num_prompts"}


@pytest.fixture
def stand_in(tmp_path):
    """``stand_in(package)`` -> a checkout folder whose ``package/model.py`` is the stand-in (imported afresh)."""
    packages = []

    def make(package: str):
        packages.append(package)
        return write_stand_in(tmp_path, package)

    yield make
    for package in packages:
        forget_stand_in(package)


@pytest.mark.parametrize("backbone", list(ANCHORS))
def test_masras_rows_have_the_architecture_of_the_anchors_row(backbone):
    name = BACKBONE_CONFIGS[backbone]
    cfg = Config() if name is None else load_config(name)
    assert cfg.model.backbone == backbone
    args = ANCHORS[backbone].args(V_DIM, T_DIM, torch.device("cpu"))
    pairs = SHARED | (CG_DETR if backbone == "cg_detr" else {})
    for ours, theirs in pairs.items():
        value = cfg.model
        for part in ours.split("."):
            value = getattr(value, part)
        assert value == getattr(args, theirs), (ours, theirs)
    assert (args.v_feat_dim, args.t_feat_dim) == (V_DIM, T_DIM)


@pytest.mark.parametrize("backbone", list(ANCHORS))
def test_masras_rows_are_on_the_backbone(backbone):
    model, steps = build_steps(StepSpec("masra", batch_size=2, clips=8, threads=1, backbone=backbone))
    assert type(model).__name__ == {"qd_detr": "GroundingModel", "moment_detr": "MomentDETR",
                                    "cg_detr": "CGDETR"}[backbone]
    assert set(steps) == {"train_step", "inference", "inference_single"}


@pytest.mark.parametrize("backbone", list(ANCHORS))
def test_the_anchor_is_called_as_its_own_train_and_inference_scripts_call_it(backbone, stand_in):
    anchor = ANCHORS[backbone]
    repo = stand_in(anchor.package)
    batch = synthetic_batch(3, 8, 4, V_DIM, T_DIM, 16)
    single = synthetic_batch(1, 8, 4, V_DIM, T_DIM, 16, seed=1)
    cuda = torch.Tensor.cuda
    model, steps = anchor_steps(anchor, repo, batch, single, torch.device("cpu"))
    before = model.proj.weight.detach().clone()
    for job in ("train_step", "inference", "inference_single"):
        steps[job]()
    calls = sys.modules[f"{anchor.package}.model"].CALLS
    assert [(training, size) for training, size, _ in calls] == [(True, 3), (False, 3), (False, 1)]
    (_, _, trained), (_, _, inferred), _ = calls
    if anchor.takes_ids:  # CG-DETR: the samples' vid and qid, and the targets in training only
        assert trained["vid"] == [m["vid"] for m in batch.meta] and trained["qid"] == [m["qid"] for m in batch.meta]
        targets = trained["targets"]
        assert torch.equal(targets["relevant_clips"], batch.saliency_all_labels)
        assert [t["spans"] for t in targets["span_labels"]] == batch.span_targets
        assert set(inferred) == {"vid", "qid"}
    else:
        assert trained == inferred == {}
    assert not torch.equal(model.proj.weight, before)  # the AdamW step ran
    assert torch.Tensor.cuda is cuda  # .cuda() mapped to the tensor's own device only during the calls
