"""QD-DETR's own model, criterion and training step, imported from a user's checkout of wjun0830/QD-DETR.

``masra bench model --qd-detr-repo PATH`` times these next to masra in the same process. Nothing of
QD-DETR is part of masra: the code is imported from PATH at run time and configured with QD-DETR's
defaults (config.py of that repository), the QVHighlights dimensions of the benchmark batch.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from argparse import Namespace
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from masra.data.batch import GroundingBatch
from masra.errors import MasraError


def _qd_detr_args(v_dim: int, t_dim: int, device: torch.device) -> Namespace:
    """QD-DETR's training defaults (qd_detr/config.py, scripts/train.sh)."""
    return Namespace(
        hidden_dim=256, dropout=0.1, nheads=8, dim_feedforward=1024, enc_layers=2, dec_layers=2, pre_norm=False,
        position_embedding="sine", max_q_l=32, max_v_l=75, input_dropout=0.5, t_feat_dim=t_dim, v_feat_dim=v_dim,
        a_feat_dir=None, num_queries=10, aux_loss=True, contrastive_align_loss=False, contrastive_hdim=64,
        span_loss_type="l1", use_txt_pos=False, n_input_proj=2, set_cost_span=10, set_cost_giou=1, set_cost_class=4,
        span_loss_coef=10, giou_loss_coef=1, label_loss_coef=4, eos_coef=0.1, temperature=0.07,
        saliency_margin=0.2, lw_saliency=1.0, dset_name="hl", device=str(device), lr=1e-4, wd=1e-4, grad_clip=0.1,
    )


def _import_build_model(repo: Path) -> Callable:
    if not (repo / "qd_detr" / "model.py").is_file():
        raise MasraError("not a QD-DETR checkout (qd_detr/model.py is missing)", file=repo, field="--qd-detr-repo")
    sys.path.insert(0, str(repo.resolve()))
    try:
        return importlib.import_module("qd_detr.model").build_model
    except ImportError as exc:
        raise MasraError(f"cannot import QD-DETR's model: {exc}", file=repo, field="--qd-detr-repo") from exc
    finally:
        sys.path.remove(str(repo.resolve()))


@contextlib.contextmanager
def _cuda_calls_stay_on(device: torch.device) -> Iterator[None]:
    """QD-DETR's transformer creates the decoder's first target with a hard-coded ``.cuda()``; on a CPU run
    that call returns the tensor where it is, so the reference runs unchanged otherwise."""
    if device.type == "cuda":
        yield
        return
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.cuda = original  # type: ignore[method-assign]


def qd_detr_steps(
    repo: Path, batch: GroundingBatch, single: GroundingBatch, device: torch.device
) -> tuple[torch.nn.Module, dict[str, Callable[[], None]]]:
    """(model, jobs): QD-DETR's training step (forward, criterion with matching, weighted sum, backward, grad-norm clip,
    AdamW: its train.py) and inference forwards on ``batch`` and on the one-query ``single`` batch."""
    v_dim, t_dim = batch.video_feats.shape[-1], batch.query_feats.shape[-1]
    args = _qd_detr_args(v_dim, t_dim, device)
    torch.manual_seed(0)
    model, criterion = _import_build_model(repo)(args)
    model.to(device)
    criterion.to(device)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=args.wd
    )

    def inputs(b: GroundingBatch) -> dict[str, torch.Tensor]:
        return {"src_txt": b.query_feats, "src_txt_mask": b.query_mask, "src_vid": b.video_feats,
                "src_vid_mask": b.video_mask}

    targets = {
        "span_labels": [{"spans": spans} for spans in batch.span_targets or []],
        "saliency_pos_labels": batch.saliency_pos_idx,
        "saliency_neg_labels": batch.saliency_neg_idx,
        "saliency_all_labels": batch.saliency_all_labels,
    }

    def train_step() -> None:
        model.train()
        criterion.train()
        with _cuda_calls_stay_on(device):
            outputs = model(**inputs(batch))
        loss_dict = criterion(outputs, targets)
        losses = sum(loss_dict[k] * criterion.weight_dict[k] for k in loss_dict if k in criterion.weight_dict)
        optimizer.zero_grad()
        losses.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()

    def infer(b: GroundingBatch) -> Callable[[], None]:
        def run() -> None:
            model.eval()
            with torch.no_grad(), _cuda_calls_stay_on(device):
                model(**inputs(b))

        return run

    steps = {"train_step": train_step, "inference": infer(batch), "inference_single": infer(single)}
    return model, steps
