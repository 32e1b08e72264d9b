"""Random, fully populated batches (targets and priors included) for the model benchmarks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from masra.data.batch import GroundingBatch


def synthetic_batch(
    batch: int,
    clips: int,
    tokens: int,
    v_dim: int,
    t_dim: int,
    prior_dim: int,
    *,
    events: int = 4,
    seed: int = 0,
) -> GroundingBatch:
    """A batch of ``batch`` videos of ``clips`` clips with one GT window each and ``events`` prior events."""
    gen = torch.Generator().manual_seed(seed)
    video_mask = torch.ones(batch, clips)
    labels = torch.zeros(batch, clips)
    spans, pos_idx, neg_idx = [], torch.zeros(batch, 2, dtype=torch.long), torch.zeros(batch, 2, dtype=torch.long)
    for i in range(batch):
        start = int(torch.randint(0, clips // 2, (1,), generator=gen))
        end = start + max(2, clips // 4)
        spans.append(torch.tensor([[(start + end) / 2 / clips, (end - start) / clips]]))
        labels[i, start:end] = torch.randint(1, 13, (end - start,), generator=gen).float()
        pos_idx[i] = torch.tensor([start, end - 1])
        neg_idx[i] = torch.tensor([end % clips, (end + 1) % clips])
    bounds = torch.linspace(0, clips, events + 1).long()
    event_spans = torch.stack([bounds[:-1], bounds[1:] - 1], dim=-1).expand(batch, -1, -1).clone()  # [B, M, 2]
    return GroundingBatch(
        video_feats=torch.randn(batch, clips, v_dim, generator=gen),
        video_mask=video_mask,
        query_feats=torch.randn(batch, tokens, t_dim, generator=gen),
        query_mask=torch.ones(batch, tokens),
        meta=[{"qid": i, "vid": f"v{i}", "query": "", "duration": float(2 * clips)} for i in range(batch)],
        span_targets=spans,
        saliency_pos_idx=pos_idx,
        saliency_neg_idx=neg_idx,
        saliency_all_labels=labels,
        relevant_mask=(labels > 0).float(),
        has_priors=torch.ones(batch),
        caption_emb=F.normalize(torch.randn(batch, clips, prior_dim, generator=gen), dim=-1),
        caption_mask=torch.ones(batch, clips),
        event_emb=F.normalize(torch.randn(batch, events, prior_dim, generator=gen), dim=-1),
        event_spans=event_spans,
        event_mask=torch.ones(batch, events),
    )
