"""Model outputs -> official submission rows (docs/evaluation.md, "Input format"), reproducing the anchors' number formatting.

Per query: score = softmax(logits)[fg]; window = (c ∓ w/2) × duration (float32); optional clamp to
[0, duration]; rows stable-sorted by score, descending; every number to 4 decimals; then the dataset's
rounding rule on float32 values; optional temporal NMS; saliency through fp16, first valid_len clips.

NumPy only, no torch: the one post-processing of the torch model (training, ``masra predict``, the Grounder)
and of its ONNX export (``masra.runtime``). Outputs are taken as arrays; a torch caller hands over host arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from masra.datasets import QVH_CLIP_LENGTH
from masra.errors import MasraError

# Upper clamp (seconds) of the rounding rules that clamp: QVHighlights segments are 150 s.
MAX_TIMESTAMP = 150.0
ROUNDING_MODES = ("none", "qvhighlights", "round_clip", "round_only")
# The model outputs the submission rows are made from.
SUBMISSION_OUTPUTS = ("pred_logits", "pred_spans", "saliency_scores", "video_mask")


class WindowSettings(Protocol):
    """The settings of :func:`query_windows`: ``masra.config.EvalConfig`` has them, and so does
    :class:`PostprocessSettings` (what an export carries)."""

    clamp_to_duration: bool
    postprocess: str
    nms_threshold: float
    max_before_nms: int
    max_after_nms: int


@dataclass(frozen=True)
class PostprocessSettings:
    """:class:`WindowSettings` as plain values (``eval.*`` of the config that trained the model)."""

    clamp_to_duration: bool
    postprocess: str
    nms_threshold: float
    max_before_nms: int
    max_after_nms: int

    @classmethod
    def of(cls, settings: WindowSettings) -> "PostprocessSettings":
        return cls(bool(settings.clamp_to_duration), str(settings.postprocess), float(settings.nms_threshold),
                   int(settings.max_before_nms), int(settings.max_after_nms))


def _four_decimals(values: list[float]) -> list[float]:
    return [float(f"{v:.4f}") for v in values]


def round_windows(windows: list[list[float]], mode: str, clip_length: float) -> list[list[float]]:
    """Apply a dataset rounding rule to [[st, ed, score], ...] exactly as the anchors' PostProcessorDETR does.

    qvhighlights: clamp [0, 150], round to multiples of 2 s; round_clip: clamp [0, 150], round to
    multiples of clip_length; round_only: round to multiples of clip_length; none: unchanged.
    Arithmetic in float32 like the anchors' tensors; rounding half to even (as torch.round); windows may
    become zero-length and are kept.
    """
    if mode == "none" or not windows:
        return windows
    if mode not in ROUNDING_MODES:
        raise MasraError(f"unknown post-processing {mode!r}", field="eval.postprocess")
    table = np.asarray(windows, dtype=np.float32)  # [K, 3]
    spans = table[:, :2]
    step = np.float32(QVH_CLIP_LENGTH if mode == "qvhighlights" else clip_length)
    if mode in ("qvhighlights", "round_clip"):
        spans = np.clip(spans, np.float32(0), np.float32(MAX_TIMESTAMP))
    spans = np.round(spans / step) * step
    rows = np.concatenate([spans, table[:, 2:3]], axis=1).tolist()
    return [row[:2] + [float(f"{row[2]:.4f}")] for row in rows]


def hull_iou(a: list[float], b: list[float]) -> float:
    """IoU with the hull as denominator (the anchors' temporal NMS); 0 when the hull is empty."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    hull = max(a[1], b[1]) - min(a[0], b[0])
    return inter / hull if hull > 0 else 0.0


def temporal_nms(
    windows: list[list[float]], threshold: float, max_before: int = 10, max_after: int = 10
) -> list[list[float]]:
    """Greedy NMS over the first ``max_before`` rows: keep by descending score, drop any window whose hull IoU
    with a kept one is > threshold (strict), stop after ``max_after`` kept."""
    candidates = sorted(windows[:max_before], key=lambda row: row[2], reverse=True)
    kept: list[list[float]] = []
    for row in candidates:
        if len(kept) == max_after:
            break
        if all(hull_iou(row, other) <= threshold for other in kept):
            kept.append(row)
    return kept


def foreground_scores(logits: np.ndarray) -> np.ndarray:
    """softmax(logits)[..., 0] in float32: [..., Q, 2] -> [..., Q]."""
    logits = np.asarray(logits, dtype=np.float32)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True))[..., 0]


def query_windows(
    logits: np.ndarray, spans: np.ndarray, duration: float, settings: WindowSettings, clip_length: float
) -> list[list[float]]:
    """One query's ranked windows: logits [Q, 2], spans [Q, 2] (cx, w) -> [[st, ed, score], ...]."""
    scores = foreground_scores(logits)  # [Q]
    spans = np.asarray(spans, dtype=np.float32)
    center, width = spans[:, 0], spans[:, 1]
    windows = np.stack([center - 0.5 * width, center + 0.5 * width], axis=1) * np.float32(duration)  # [Q, 2] s
    if settings.clamp_to_duration:
        windows = np.clip(windows, np.float32(0), np.float32(duration))
    rows = np.concatenate([windows, scores[:, None]], axis=1).tolist()
    rows = sorted(rows, key=lambda row: row[2], reverse=True)  # Python's sort is stable
    rows = [_four_decimals(row) for row in rows]
    rows = round_windows(rows, settings.postprocess, clip_length)
    if settings.nms_threshold >= 0:
        rows = temporal_nms(rows, settings.nms_threshold, settings.max_before_nms, settings.max_after_nms)
    return rows


def outputs_to_submission(
    outputs: dict[str, Any],
    meta: list[dict[str, Any]],
    settings: WindowSettings,
    clip_length: float,
    with_saliency: bool = True,
) -> list[dict[str, Any]]:
    """Model outputs for a batch (``SUBMISSION_OUTPUTS`` as host arrays) + per-sample meta (qid, query, vid,
    duration) -> submission rows.

    Rows carry qid, query, vid, pred_relevant_windows and (with_saliency) pred_saliency_scores:
    the fp16-cast saliency of the first valid_len clips, like the reference inference code.
    """
    logits = np.asarray(outputs["pred_logits"], dtype=np.float32)  # [B, Q, 2]
    spans = np.asarray(outputs["pred_spans"], dtype=np.float32)  # [B, Q, 2]
    valid_lengths = np.asarray(outputs["video_mask"]).sum(1).astype(np.int64).tolist()
    saliency = np.asarray(outputs["saliency_scores"], dtype=np.float32).astype(np.float16)  # [B, L]
    rows = []
    for i, info in enumerate(meta):
        for key in ("qid", "vid", "duration"):
            if key not in info:
                raise MasraError(f"batch meta of sample {i} has no {key!r}", field=key)
        row: dict[str, Any] = {
            "qid": info["qid"],
            "query": info.get("query", ""),
            "vid": info["vid"],
            "pred_relevant_windows": query_windows(logits[i], spans[i], float(info["duration"]), settings, clip_length),
        }
        if with_saliency:
            row["pred_saliency_scores"] = saliency[i, : valid_lengths[i]].tolist()
        rows.append(row)
    return rows
