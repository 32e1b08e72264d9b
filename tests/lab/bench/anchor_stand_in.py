"""A stand-in for an anchor's checkout (QD-DETR, Moment-DETR, CG-DETR) for the ``masra bench model`` tests: its
``build_model(args)`` has the anchors' signature, its forward calls ``.cuda()`` on a new tensor (as QD-DETR's and
CG-DETR's do) and records what it was given (``CALLS``: training flag, batch size, further arguments)."""

from __future__ import annotations

import sys
from pathlib import Path

STAND_IN = '''
import torch
from torch import nn

CALLS = []


class Model(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.proj = nn.Linear(args.v_feat_dim, args.hidden_dim)

    def forward(self, src_txt, src_txt_mask, src_vid, src_vid_mask, **given):
        CALLS.append((self.training, src_vid.shape[0], given))
        return {"pred": self.proj(src_vid).mean() + torch.zeros(1).cuda().sum()}


class Criterion(nn.Module):
    weight_dict = {"loss_span": 10.0}

    def forward(self, outputs, targets):
        return {"loss_span": outputs["pred"], "unweighted": outputs["pred"] * 0}


def build_model(args):
    return Model(args), Criterion()
'''


def write_stand_in(root: Path, package: str) -> Path:
    """``root`` as a checkout whose ``package/model.py`` is the stand-in; returns ``root``."""
    (root / package).mkdir(parents=True)
    (root / package / "model.py").write_text(STAND_IN)
    return root


def forget_stand_in(package: str) -> None:
    """Drop an imported stand-in, so that the next test imports its own."""
    for name in (package, f"{package}.model"):
        sys.modules.pop(name, None)
