"""Model outputs -> official submission rows (docs/evaluation.md, "Input format"), reproducing the anchors' number formatting.

Per query: score = softmax(logits)[fg]; window = (c ∓ w/2) × duration (float32); optional clamp to
[0, duration]; rows stable-sorted by score, descending; every number to 4 decimals; then the dataset's
rounding rule on a float32 tensor; optional temporal NMS; saliency through fp16, first valid_len clips.
"""

from __future__ import annotations

from typing import Any

import torch

from masra.config import QVH_CLIP_LENGTH, EvalConfig
from masra.errors import MasraError
from masra.model.span_ops import span_cxw_to_xx

# Upper clamp (seconds) of the rounding rules that clamp: QVHighlights segments are 150 s.
MAX_TIMESTAMP = 150.0


def _four_decimals(values: list[float]) -> list[float]:
    return [float(f"{v:.4f}") for v in values]


def round_windows(windows: list[list[float]], mode: str, clip_length: float) -> list[list[float]]:
    """Apply a dataset rounding rule to [[st, ed, score], ...] exactly as the anchors' PostProcessorDETR does.

    qvhighlights: clamp [0, 150], round to multiples of 2 s; round_clip: clamp [0, 150], round to
    multiples of clip_length; round_only: round to multiples of clip_length; none: unchanged.
    torch.round rounds half to even; windows may become zero-length and are kept.
    """
    if mode == "none" or not windows:
        return windows
    if mode not in ("qvhighlights", "round_clip", "round_only"):
        raise MasraError(f"unknown post-processing {mode!r}", field="eval.postprocess")
    table = torch.tensor(windows, dtype=torch.float32)  # [K, 3]
    spans = table[:, :2]
    step = QVH_CLIP_LENGTH if mode == "qvhighlights" else clip_length
    if mode in ("qvhighlights", "round_clip"):
        spans = spans.clamp(min=0, max=MAX_TIMESTAMP)
    spans = torch.round(spans / step) * step
    rows = torch.cat([spans, table[:, 2:3]], dim=1).tolist()
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


def query_windows(
    logits: torch.Tensor, spans: torch.Tensor, duration: float, eval_cfg: EvalConfig, clip_length: float
) -> list[list[float]]:
    """One query's ranked windows: logits [Q, 2], spans [Q, 2] (cx, w) -> [[st, ed, score], ...]."""
    scores = logits.float().softmax(-1)[:, 0]  # [Q]
    windows = span_cxw_to_xx(spans.float()) * duration  # [Q, 2] seconds, float32 like the anchors
    if eval_cfg.clamp_to_duration:
        windows = windows.clamp(min=0, max=duration)
    rows = torch.cat([windows, scores[:, None]], dim=1).tolist()
    rows = sorted(rows, key=lambda row: row[2], reverse=True)  # Python's sort is stable
    rows = [_four_decimals(row) for row in rows]
    rows = round_windows(rows, eval_cfg.postprocess, clip_length)
    if eval_cfg.nms_threshold >= 0:
        rows = temporal_nms(rows, eval_cfg.nms_threshold, eval_cfg.max_before_nms, eval_cfg.max_after_nms)
    return rows


def outputs_to_submission(
    outputs: dict[str, Any],
    meta: list[dict[str, Any]],
    eval_cfg: EvalConfig,
    clip_length: float,
    with_saliency: bool = True,
) -> list[dict[str, Any]]:
    """Model outputs for a batch + per-sample meta (qid, query, vid, duration) -> submission rows.

    Rows carry qid, query, vid, pred_relevant_windows and (with_saliency) pred_saliency_scores:
    the fp16-cast saliency of the first valid_len clips, like the reference inference code.
    """
    logits = outputs["pred_logits"].detach().float().cpu()  # [B, Q, 2]
    spans = outputs["pred_spans"].detach().float().cpu()  # [B, Q, 2]
    valid_lengths = outputs["video_mask"].detach().sum(1).long().tolist()
    saliency = outputs["saliency_scores"].detach().float().cpu().half()  # [B, L]
    rows = []
    for i, info in enumerate(meta):
        for key in ("qid", "vid", "duration"):
            if key not in info:
                raise MasraError(f"batch meta of sample {i} has no {key!r}", field=key)
        row: dict[str, Any] = {
            "qid": info["qid"],
            "query": info.get("query", ""),
            "vid": info["vid"],
            "pred_relevant_windows": query_windows(logits[i], spans[i], float(info["duration"]), eval_cfg, clip_length),
        }
        if with_saliency:
            row["pred_saliency_scores"] = saliency[i, : valid_lengths[i]].tolist()
        rows.append(row)
    return rows
