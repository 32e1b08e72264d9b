"""The batch every model, criterion and engine function receives (the contract between data and model).

B = batch size, L = max number of clips in the batch, N = max number of query tokens,
M = max number of prior events, Ds = prior text-embedding dimension. Masks are float, 1 = valid, 0 = pad.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class GroundingBatch:
    video_feats: torch.Tensor  # [B, L, Dv] float, TEF included as the last 2 dims
    video_mask: torch.Tensor  # [B, L] float
    query_feats: torch.Tensor  # [B, N, Dt] float
    query_mask: torch.Tensor  # [B, N] float
    # One dict per sample, never moved to a device: qid, vid, query, duration, and the raw annotation
    # fields when known (relevant_windows, relevant_clip_ids, saliency_scores, label).
    meta: list[dict[str, Any]]
    # ----- training targets (None at inference) -----
    # Per sample: [n_i, 2] (center, width) normalised by ctx_l * clip_length; n_i <= max_windows.
    span_targets: list[torch.Tensor] | None = None
    saliency_pos_idx: torch.Tensor | None = None  # [B, 2] long, clip indices of the 2 positive clips
    saliency_neg_idx: torch.Tensor | None = None  # [B, 2] long, clip indices of the 2 negative clips
    # [B, L] float: per-clip saliency label (QVH: sum of the 3 annotators, 0..12; 0 outside relevant clips;
    # single-window datasets: 1 inside the GT window), used by the rank-contrastive loss.
    saliency_all_labels: torch.Tensor | None = None
    relevant_mask: torch.Tensor | None = None  # [B, L] float, 1 for clips inside a GT window
    # ----- MLLM priors (training only; None when no sample in the batch has priors) -----
    has_priors: torch.Tensor | None = None  # [B] float, 1 when the sample has a prior file
    caption_emb: torch.Tensor | None = None  # [B, L, Ds] float, L2-normalised clip caption embeddings
    caption_mask: torch.Tensor | None = None  # [B, L] float, 1 where the clip has a caption
    event_emb: torch.Tensor | None = None  # [B, M, Ds] float, L2-normalised event-description embeddings
    event_spans: torch.Tensor | None = None  # [B, M, 2] long, [first_clip, last_clip] inclusive clip indices
    event_mask: torch.Tensor | None = None  # [B, M] float

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "GroundingBatch":
        """A copy with every tensor moved to ``device`` (meta stays on the host)."""

        def move(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                return value.to(device, non_blocking=non_blocking)
            if isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
                return [v.to(device, non_blocking=non_blocking) for v in value]
            return value

        changes = {f.name: move(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "meta"}
        return dataclasses.replace(self, **changes)

    def __len__(self) -> int:
        return self.video_feats.shape[0]


def pad_sequences(tensors: list[torch.Tensor], dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad [len_i, *] tensors to [B, max_len, *]; mask [B, max_len] float, 1 = valid."""
    max_len = max(t.shape[0] for t in tensors)
    out = torch.zeros((len(tensors), max_len, *tensors[0].shape[1:]), dtype=dtype)
    mask = torch.zeros(len(tensors), max_len)
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
        mask[i, : t.shape[0]] = 1.0
    return out, mask
