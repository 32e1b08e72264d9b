"""A small model must memorise a handful of synthetic samples: the whole train -> post-process -> evaluate path."""

import time

import pytest
import torch

from masra.config import EvalConfig
from masra.data.batch import GroundingBatch
from masra.eval import evaluate
from masra.model import build_model, outputs_to_submission

from conftest import small_config

N_SAMPLES, N_CLIPS, CLIP_LENGTH, N_CONCEPTS = 8, 20, 2.0, 4


def _synthetic_batch(seed: int = 0) -> tuple[GroundingBatch, list[dict]]:
    """Each query names one of 4 concepts; the clips inside its window carry that concept's signature."""
    gen = torch.Generator().manual_seed(seed)
    video_sig = torch.randn(N_CONCEPTS, 16, generator=gen)
    text_sig = torch.randn(N_CONCEPTS, 8, generator=gen)
    video = torch.randn(N_SAMPLES, N_CLIPS, 16, generator=gen) * 0.3
    text = torch.randn(N_SAMPLES, 4, 8, generator=gen) * 0.1
    spans, labels, ground_truth, meta = [], torch.zeros(N_SAMPLES, N_CLIPS), [], []
    pos_idx = torch.zeros(N_SAMPLES, 2, dtype=torch.long)
    neg_idx = torch.zeros(N_SAMPLES, 2, dtype=torch.long)
    duration = N_CLIPS * CLIP_LENGTH
    for i in range(N_SAMPLES):
        concept = i % N_CONCEPTS
        start = int(torch.randint(0, N_CLIPS - 6, (1,), generator=gen))
        end = start + int(torch.randint(3, 7, (1,), generator=gen))
        video[i, start:end] += video_sig[concept]
        text[i] += text_sig[concept]
        spans.append(torch.tensor([[(start + end) / 2 / N_CLIPS, (end - start) / N_CLIPS]]))
        labels[i, start:end] = 12.0
        pos_idx[i] = torch.tensor([start, end - 1])
        neg_idx[i] = torch.tensor([(end + 1) % N_CLIPS, (start - 2) % N_CLIPS])
        window = [start * CLIP_LENGTH, end * CLIP_LENGTH]
        meta.append({"qid": i, "vid": f"vid{i}", "query": f"concept {concept}", "duration": duration})
        ground_truth.append({"qid": i, "query": f"concept {concept}", "vid": f"vid{i}", "duration": duration,
                             "relevant_windows": [window]})
    clip = torch.arange(N_CLIPS).float()
    tef = torch.stack([clip / N_CLIPS, (clip + 1) / N_CLIPS], dim=-1)  # [L, 2] start/end fractions
    video = torch.cat([video, tef.expand(N_SAMPLES, -1, -1)], dim=-1)
    batch = GroundingBatch(
        video_feats=video,
        video_mask=torch.ones(N_SAMPLES, N_CLIPS),
        query_feats=text,
        query_mask=torch.ones(N_SAMPLES, 4),
        meta=meta,
        span_targets=spans,
        saliency_pos_idx=pos_idx,
        saliency_neg_idx=neg_idx,
        saliency_all_labels=labels,
    )
    return batch, ground_truth


@pytest.mark.slow
def test_small_model_overfits_synthetic_moments():
    torch.manual_seed(0)
    cfg = small_config(dropout=0.0, input_dropout=0.0)
    batch, ground_truth = _synthetic_batch()
    model, criterion = build_model(cfg, v_feat_dim=18, t_feat_dim=8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    started = time.monotonic()
    model.train()
    for _ in range(150):  # R1@0.5 reaches 100 after about 75 steps
        loss = criterion(model(batch), batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()
    with torch.no_grad():
        rows = outputs_to_submission(model(batch), batch.meta, EvalConfig(), CLIP_LENGTH, with_saliency=False)
    metrics = evaluate("qvhighlights", rows, ground_truth)
    assert metrics["brief"]["MR-full-R1@0.5"] >= 90, (metrics["brief"], time.monotonic() - started)
