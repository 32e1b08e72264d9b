"""Grounding a query in a video file: the checkpoint's encoder (loaded and checked against what the
checkpoint records) and sliding windows over videos longer than the trained length.

:class:`masra.inference.Grounder` exposes these as ``encoder``, ``extract_video`` and ``predict_video``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from masra.checkpoint import ModelDims
from masra.errors import MasraError
from masra.features.video import Progress, VideoFeatures
from masra.video.predict import VideoPrediction

if TYPE_CHECKING:
    from masra.features.encoder import ClipEncoder
    from masra.inference.grounder import Grounder


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


def ground_video(
    grounder: "Grounder",
    video: VideoFeatures,
    query: str,
    query_feats: np.ndarray,
    progress: Progress | None = None,
    top_k: int | None = None,
) -> VideoPrediction:
    """Moments and per-clip saliency of one query ([N, Dt] ``query_feats``) over a whole video's features;
    videos longer than the trained length (``data.max_v_l``) are covered by sliding windows
    (masra.video.windows) whose moments are merged and whose saliencies are averaged."""
    from masra.model.feature_inference import predict_sliding

    clip_length, cfg = grounder.clip_length, grounder.cfg
    if abs(video.clip_length - clip_length) > 1e-6:
        raise MasraError(f"features of {video.clip_length} s clips; this model uses {clip_length} s",
                         file=video.path)
    top_k = top_k if top_k is not None else cfg.eval.max_after_nms
    pred, n_windows = predict_sliding(
        lambda feats, duration, k: grounder.predict(feats, query_feats, duration=duration, top_k=k),
        video.features, grounder.inputs, video.duration, cfg.eval, top_k,
        progress=(lambda done, total: progress("ground", done, total)) if progress else None,
    )
    return VideoPrediction(
        query=query,
        vid=Path(video.path).stem,
        duration=video.duration,
        clip_length=clip_length,
        windows=pred.windows,
        saliency=pred.saliency,
        n_windows=n_windows,
    )
