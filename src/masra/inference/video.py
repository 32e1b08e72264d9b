"""The checkpoint's video/query encoder, loaded and checked against what the checkpoint records
(:attr:`masra.inference.Grounder.encoder`; ``masra export --encoder``). Grounding in video files:
masra.model.video_inference."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from masra.checkpoint import ModelDims
from masra.errors import MasraError

if TYPE_CHECKING:
    from masra.features.encoder import ClipEncoder


def load_checked_encoder(spec: str | None, device: torch.device, dims: ModelDims, use_tef: bool, where: str) -> "ClipEncoder":
    """The video/query encoder of ``spec`` (None: refused, the checkpoint ``where`` records none), checked to
    be the one that made the checkpoint's training features and to give its input dims."""
    from masra.features.encoder import ClipEncoder, check_encoder_identity

    if spec is None:
        raise MasraError(f"{where} does not record which encoder made its training features; "
                         "name one (--encoder clip:NAME_OR_PATH / video_encoder=...)", field="encoder")
    encoder = ClipEncoder.load(spec, device)
    check_encoder_identity(dims.feature_encoder, dims.feature_encoder_fingerprint, encoder, where=where)
    raw_dims = dims.v_source_dims or [dims.v_feat_dim - (2 if use_tef else 0)]
    if raw_dims != [encoder.video_dim]:
        raise MasraError(f"{where} takes video features of dims {raw_dims}; {encoder.spec} makes "
                         f"one source of dim {encoder.video_dim}. Only checkpoints trained on this "
                         "encoder's features alone can ground video files", field="encoder")
    if encoder.text_dim != dims.t_feat_dim:
        raise MasraError(f"{where} takes query features of dim {dims.t_feat_dim}; "
                         f"{encoder.spec} makes {encoder.text_dim}", field="encoder")
    return encoder
