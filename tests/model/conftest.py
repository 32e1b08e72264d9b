"""Small configs and synthetic batches for the model tests (hidden 32, a few clips, CPU, one thread)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from masra.config import Config
from masra.data.batch import GroundingBatch

V_DIM, T_DIM = 18, 8


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_config(**model_overrides) -> Config:
    cfg = Config()
    cfg.model.hidden_dim = 32
    cfg.model.nheads = 4
    cfg.model.dim_feedforward = 64
    for key, value in model_overrides.items():
        setattr(cfg.model, key, value)
    return cfg


def random_batch(lengths: list[int], n_tokens: list[int], seed: int = 0) -> GroundingBatch:
    """Random features with end padding, one or two target windows per sample and saliency labels."""
    gen = torch.Generator().manual_seed(seed)
    batch, max_l, max_n = len(lengths), max(lengths), max(n_tokens)
    video_mask = torch.zeros(batch, max_l)
    query_mask = torch.zeros(batch, max_n)
    for i, (length, tokens) in enumerate(zip(lengths, n_tokens)):
        video_mask[i, :length] = 1
        query_mask[i, :tokens] = 1
    video = torch.randn(batch, max_l, V_DIM, generator=gen) * video_mask[..., None]
    text = torch.randn(batch, max_n, T_DIM, generator=gen) * query_mask[..., None]
    spans, labels = [], torch.zeros(batch, max_l)
    pos_idx, neg_idx = torch.zeros(batch, 2, dtype=torch.long), torch.zeros(batch, 2, dtype=torch.long)
    for i, length in enumerate(lengths):
        start = int(torch.randint(0, length // 2, (1,), generator=gen))
        end = start + max(1, length // 3)
        spans.append(torch.tensor([[(start + end) / 2 / length, (end - start) / length]]))
        labels[i, start:end] = torch.randint(1, 13, (end - start,), generator=gen).float()
        pos_idx[i] = torch.tensor([start, end - 1])
        neg_idx[i] = torch.tensor([end % length, (end + 1) % length])
    meta = [{"qid": i, "vid": f"v{i}", "query": f"q{i}", "duration": float(2 * n)} for i, n in enumerate(lengths)]
    return GroundingBatch(
        video_feats=video,
        video_mask=video_mask,
        query_feats=text,
        query_mask=query_mask,
        meta=meta,
        span_targets=spans,
        saliency_pos_idx=pos_idx,
        saliency_neg_idx=neg_idx,
        saliency_all_labels=labels,
        relevant_mask=(labels > 0).float(),
    )


def last_sample_alone(pair: GroundingBatch, clips: int, tokens: int) -> GroundingBatch:
    """The last sample of ``pair`` as a batch of its own, without the padding the batch gave it."""
    return dataclasses.replace(
        pair,
        video_feats=pair.video_feats[-1:, :clips],
        video_mask=pair.video_mask[-1:, :clips],
        query_feats=pair.query_feats[-1:, :tokens],
        query_mask=pair.query_mask[-1:, :tokens],
        meta=pair.meta[-1:],
    )


@pytest.fixture(name="small_config")
def _small_config_fixture():
    return small_config


@pytest.fixture(name="random_batch")
def _random_batch_fixture():
    return random_batch
