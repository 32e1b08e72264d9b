"""Inference on features without torch: raw features -> model inputs, one padded forward, post-processing.

One implementation for both back ends: :class:`masra.inference.Grounder` (the torch model) and
:class:`masra.runtime.OnnxGrounder` (its ONNX export on onnxruntime) pass their forward as a function
(:data:`Forward`); everything else here is NumPy. :class:`InputSpec` is what inference needs to know about
the model's inputs (the checkpoint's data settings and dims; an export carries it in ``export.json``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from masra.data.features import l2_normalize_rows, temporal_endpoint_feature
from masra.errors import MasraError
from masra.model.postprocess import WindowSettings, query_windows

logger = logging.getLogger("masra.inference")

# (video [B, L, Dv], video_mask [B, L], query [B, N, Dt], query_mask [B, N]), float32, masks 1 = valid
# -> (pred_logits [B, Q, 2], pred_spans [B, Q, 2], saliency_scores [B, L]) as float32 arrays.
Forward = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class InputSpec:
    """The model's inputs: dims (``ModelDims``) and how raw features become them (``data.*`` of its config)."""

    v_feat_dim: int  # TEF included
    t_feat_dim: int
    v_source_dims: list[int] | None  # per-source dims before TEF (per-source normalisation)
    use_tef: bool
    normalize_video: bool
    normalize_text: bool
    max_v_l: int  # clips the model was trained on at most (0: no limit)
    max_q_l: int  # query tokens kept (0: all)
    clip_length: float  # seconds per clip

    @classmethod
    def of(cls, cfg: Any, dims: Any) -> "InputSpec":
        """From a checkpoint's config (``masra.config.Config``) and ``ModelDims``."""
        data = cfg.data
        return cls(int(dims.v_feat_dim), int(dims.t_feat_dim),
                   None if dims.v_source_dims is None else [int(d) for d in dims.v_source_dims],
                   bool(data.use_tef), bool(data.normalize_video), bool(data.normalize_text), int(data.max_v_l),
                   int(data.max_q_l), float(data.clip_length))


@dataclass
class Prediction:
    windows: list[tuple[float, float, float]]  # (start_s, end_s, score), best first, dataset post-processing applied
    saliency: np.ndarray  # [L] float32 per-clip saliency (highlight) scores


def as_features(value: Any, name: str, ndim: int = 2) -> np.ndarray:
    """``value`` as a finite float32 array of ``ndim`` dimensions (else a MasraError naming ``name``)."""
    array = np.asarray(value)
    if array.ndim != ndim:
        raise MasraError(f"expected a {ndim}-d array, got shape {tuple(array.shape)}", field=name)
    if not np.isfinite(array).all():
        raise MasraError("contains NaN or inf", field=name)
    return array.astype(np.float32)


def prepare_video(spec: InputSpec, video_feats: Any) -> np.ndarray:
    """[L, D] raw features → the model input [L', v_feat_dim]: truncated to max_v_l, each source
    L2-normalised as in training, TEF appended. Input that already has the full width (TEF included) is
    used as it is."""
    video = as_features(video_feats, "video_feats")
    tef = 2 if spec.use_tef else 0
    if spec.max_v_l > 0 and video.shape[0] > spec.max_v_l:
        logger.warning("video has %d clips; the model was trained on at most %d, the rest is dropped",
                       video.shape[0], spec.max_v_l)
        video = video[: spec.max_v_l]
    if video.shape[0] == 0:
        raise MasraError("video has no clips", field="video_feats")
    if tef and video.shape[1] == spec.v_feat_dim:
        return video
    raw_dim = spec.v_feat_dim - tef
    if video.shape[1] != raw_dim:
        raise MasraError(f"video feature dim {video.shape[1]}; this model expects {raw_dim} (or "
                         f"{spec.v_feat_dim} with TEF)", field="video_feats")
    if spec.normalize_video:
        bounds = np.cumsum([0, *(spec.v_source_dims or [raw_dim])])
        video = np.concatenate([l2_normalize_rows(video[:, a:b]) for a, b in zip(bounds[:-1], bounds[1:])], 1)
    if tef:
        video = np.concatenate([video, temporal_endpoint_feature(video.shape[0])], axis=1)
    return video.astype(np.float32)


def prepare_query(spec: InputSpec, query_feats: Any) -> np.ndarray:
    """[N, Dt] token features → truncated to max_q_l and L2-normalised as in training."""
    query = as_features(query_feats, "query_feats")
    if query.shape[1] != spec.t_feat_dim:
        raise MasraError(f"query feature dim {query.shape[1]}; this model expects {spec.t_feat_dim}",
                         field="query_feats")
    if spec.max_q_l > 0:
        query = query[: spec.max_q_l]
    if query.shape[0] == 0:
        raise MasraError("query has no tokens", field="query_feats")
    return l2_normalize_rows(query).astype(np.float32) if spec.normalize_text else query


def pad_rows(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad [len_i, D] arrays to [B, max_len, D] float32 with a mask [B, max_len] float32 (1 = valid),
    as the training collate pads."""
    longest = max(a.shape[0] for a in arrays)
    out = np.zeros((len(arrays), longest, arrays[0].shape[1]), dtype=np.float32)
    mask = np.zeros((len(arrays), longest), dtype=np.float32)
    for i, array in enumerate(arrays):
        out[i, : array.shape[0]] = array
        mask[i, : array.shape[0]] = 1.0
    return out, mask


def predict_pairs(
    forward: Forward,
    spec: InputSpec,
    settings: WindowSettings,
    videos: Sequence[Any],
    queries: Sequence[Any],
    durations: Sequence[float | None] | None = None,
    top_k: int = 10,
) -> list[Prediction]:
    """Moments and per-clip saliency for (video, query) pairs in one padded forward; a ``duration`` of None
    means clips × clip_length."""
    if len(videos) != len(queries):
        raise MasraError(f"{len(videos)} videos but {len(queries)} queries", field="queries")
    durations = list(durations) if durations is not None else [None] * len(videos)
    if len(durations) != len(videos):
        raise MasraError(f"{len(videos)} videos but {len(durations)} durations", field="durations")
    if not videos:
        return []
    prepared_v = [prepare_video(spec, v) for v in videos]
    prepared_q = [prepare_query(spec, q) for q in queries]
    logits, spans, saliency = forward(*pad_rows(prepared_v), *pad_rows(prepared_q))
    results = []
    for i, video in enumerate(prepared_v):
        n_clips = video.shape[0]
        duration = float(durations[i]) if durations[i] is not None else n_clips * spec.clip_length
        rows = query_windows(logits[i], spans[i], duration, settings, spec.clip_length)[:top_k]
        results.append(Prediction(windows=[(float(s), float(e), float(p)) for s, e, p in rows],
                                  saliency=np.asarray(saliency[i, :n_clips], dtype=np.float32).copy()))
    return results


def predict_sliding(
    predict: Callable[[np.ndarray, float, int], Prediction],
    video_feats: np.ndarray,
    spec: InputSpec,
    duration: float,
    settings: WindowSettings,
    top_k: int,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Prediction, int]:
    """One query over a whole video's raw features [L, D]: videos longer than the trained length (max_v_l)
    are covered by sliding windows (masra.video.windows), each grounded as a video of its own by
    ``predict(window_feats, window_duration, max_before_nms)``; their moments are merged and their
    saliencies averaged. Returns the whole video's prediction and the number of windows."""
    from masra.video.windows import average_saliency, merge_moments, window_starts

    n_clips = video_feats.shape[0]
    starts = window_starts(n_clips, spec.max_v_l)
    size = n_clips if len(starts) == 1 else spec.max_v_l
    per_window, saliencies = [], []
    for done, start in enumerate(starts, 1):
        offset = start * spec.clip_length
        pred = predict(video_feats[start : start + size], min(size * spec.clip_length, duration - offset),
                       settings.max_before_nms)
        per_window.append(pred.windows)
        saliencies.append(pred.saliency)
        if progress:
            progress(done, len(starts))
    offsets = [start * spec.clip_length for start in starts]
    merged = Prediction(windows=merge_moments(per_window, offsets, duration, clip_length=spec.clip_length, top_k=top_k),
                        saliency=average_saliency(n_clips, starts, saliencies))
    return merged, len(starts)
