"""Each backbone's anchor, its own model, criterion and training step, imported from a user's checkout of its
repository (wjun0830/QD-DETR, jayleicn/moment_detr, wjun0830/CGDETR).

``masra bench model --backbone NAME --qd-detr-repo|--moment-detr-repo|--cg-detr-repo PATH`` times these next to
masra's rows on the same backbone in the same process. Nothing of the anchors is part of masra: the code is
imported from PATH at run time and configured with the anchor's released QVHighlights options (QD-DETR: its
config.py defaults; Moment-DETR: run_on_video/moment_detr_ckpt/opt.json; CG-DETR: results/qvhighlights/opt.json),
the benchmark batch's feature dimensions. masra's rows use the packaged config of the same model
(:data:`masra.lab.bench.model_step.BACKBONE_CONFIGS`; tests/lab/bench/test_bench_anchors.py checks that the
architectures agree).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from argparse import Namespace
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from masra.data.batch import GroundingBatch
from masra.errors import MasraError

# What the three anchors share (their config.py defaults, kept in the released QVHighlights runs).
_COMMON = dict(
    hidden_dim=256, dropout=0.1, nheads=8, dim_feedforward=1024, pre_norm=False, position_embedding="sine",
    max_q_l=32, max_v_l=75, input_dropout=0.5, num_queries=10, aux_loss=True, contrastive_align_loss=False,
    contrastive_hdim=64, span_loss_type="l1", use_txt_pos=False, n_input_proj=2, set_cost_span=10, set_cost_giou=1,
    set_cost_class=4, span_loss_coef=10, giou_loss_coef=1, label_loss_coef=4, eos_coef=0.1, temperature=0.07,
    saliency_margin=0.2, lw_saliency=1.0, lr=1e-4, wd=1e-4, grad_clip=0.1,
)


def _qd_detr_args(v_dim: int, t_dim: int, device: torch.device) -> Namespace:
    """QD-DETR's training defaults (qd_detr/config.py, scripts/train.sh)."""
    return Namespace(**_COMMON, enc_layers=2, dec_layers=2, t_feat_dim=t_dim, v_feat_dim=v_dim, a_feat_dir=None,
                     dset_name="hl", device=str(device))


def _moment_detr_args(v_dim: int, t_dim: int, device: torch.device) -> Namespace:
    """Moment-DETR's released QVHighlights run (run_on_video/moment_detr_ckpt/opt.json; its alignment loss off)."""
    return Namespace(**_COMMON, enc_layers=2, dec_layers=2, t_feat_dim=t_dim, v_feat_dim=v_dim,
                     contrastive_align_loss_coef=0.02, device=str(device))


def _cg_detr_args(v_dim: int, t_dim: int, device: torch.device) -> Namespace:
    """CG-DETR's released QVHighlights run (results/qvhighlights/opt.json); ``device`` a torch.device, as its
    config.py leaves it."""
    return Namespace(**_COMMON, enc_layers=3, dec_layers=3, t2v_layers=2, dummy_layers=2, sent_layers=1,
                     moment_layers=1, num_dummies=45, total_prompts=10, num_prompts=1, lw_wattn=1.0, lw_ms_align=1.0,
                     lw_distill=1.0, contrastive_align_loss_coef=0.0, t_feat_dim=t_dim, v_feat_dim=v_dim,
                     a_feat_dir=None, a_feat_dim=None, dset_name="hl", device=device)


@dataclass(frozen=True)
class Anchor:
    """One backbone's anchor: ``name`` its bench variant, ``package`` the folder of its checkout that holds
    ``model.py`` (its ``build_model(args)``), ``args`` its options for the benchmark's dims and device;
    ``takes_ids``: its forward also takes the samples' ``vid`` and ``qid``, and in training the targets (CG-DETR)."""

    name: str
    title: str
    backbone: str
    repository: str
    package: str
    args: Callable[[int, int, torch.device], Namespace]
    takes_ids: bool = False

    @property
    def option(self) -> str:
        """The command-line option that names a checkout."""
        return f"--{self.name}-repo"


ANCHORS: dict[str, Anchor] = {
    "qd_detr": Anchor("qd-detr", "QD-DETR", "qd_detr", "wjun0830/QD-DETR", "qd_detr", _qd_detr_args),
    "moment_detr": Anchor("moment-detr", "Moment-DETR", "moment_detr", "jayleicn/moment_detr", "moment_detr",
                          _moment_detr_args),
    "cg_detr": Anchor("cg-detr", "CG-DETR", "cg_detr", "wjun0830/CGDETR", "cg_detr", _cg_detr_args, takes_ids=True),
}


def _import_build_model(anchor: Anchor, repo: Path) -> Callable:
    if not (repo / anchor.package / "model.py").is_file():
        raise MasraError(f"not a {anchor.title} checkout ({anchor.package}/model.py is missing)", file=repo,
                         field=anchor.option)
    sys.path.insert(0, str(repo.resolve()))
    try:
        return importlib.import_module(f"{anchor.package}.model").build_model
    except ImportError as exc:
        raise MasraError(f"cannot import {anchor.title}'s model: {exc}", file=repo, field=anchor.option) from exc
    finally:
        sys.path.remove(str(repo.resolve()))


@contextlib.contextmanager
def _cuda_calls_stay_on(device: torch.device) -> Iterator[None]:
    """QD-DETR's and CG-DETR's forwards create tensors with a hard-coded ``.cuda()``; on a CPU run that call
    returns the tensor where it is, so the reference runs unchanged otherwise."""
    if device.type == "cuda":
        yield
        return
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.cuda = original  # type: ignore[method-assign]


def anchor_steps(
    anchor: Anchor, repo: Path, batch: GroundingBatch, single: GroundingBatch, device: torch.device
) -> tuple[torch.nn.Module, dict[str, Callable[[], None]]]:
    """(model, jobs): the anchor's training step (forward, criterion with matching, weighted sum, backward,
    grad-norm clip, AdamW: its train.py) and inference forwards on ``batch`` and on the one-query ``single``
    batch (its inference.py: no targets)."""
    v_dim, t_dim = batch.video_feats.shape[-1], batch.query_feats.shape[-1]
    args = anchor.args(v_dim, t_dim, device)
    torch.manual_seed(0)
    model, criterion = _import_build_model(anchor, repo)(args)
    model.to(device)
    criterion.to(device)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=args.wd
    )

    def inputs(b: GroundingBatch) -> dict[str, Any]:
        given: dict[str, Any] = {"src_txt": b.query_feats, "src_txt_mask": b.query_mask, "src_vid": b.video_feats,
                                 "src_vid_mask": b.video_mask}
        if anchor.takes_ids:
            given.update(vid=[str(m["vid"]) for m in b.meta], qid=[m["qid"] for m in b.meta])
        return given

    targets = {
        "span_labels": [{"spans": spans} for spans in batch.span_targets or []],
        "saliency_pos_labels": batch.saliency_pos_idx,
        "saliency_neg_labels": batch.saliency_neg_idx,
        "saliency_all_labels": batch.saliency_all_labels,
        "relevant_clips": batch.saliency_all_labels,  # CG-DETR's prepare_batch_inputs: the same labels
    }
    training = inputs(batch) | ({"targets": targets} if anchor.takes_ids else {})

    def train_step() -> None:
        model.train()
        criterion.train()
        with _cuda_calls_stay_on(device):
            outputs = model(**training)
        loss_dict = criterion(outputs, targets)
        losses = sum(loss_dict[k] * criterion.weight_dict[k] for k in loss_dict if k in criterion.weight_dict)
        optimizer.zero_grad()
        losses.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()

    def infer(b: GroundingBatch) -> Callable[[], None]:
        given = inputs(b)

        def run() -> None:
            model.eval()
            with torch.no_grad(), _cuda_calls_stay_on(device):
                model(**given)

        return run

    steps = {"train_step": train_step, "inference": infer(batch), "inference_single": infer(single)}
    return model, steps
