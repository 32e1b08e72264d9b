"""``GroundingDataset`` (one sample per annotation record) and ``collate`` → ``GroundingBatch``.

Randomness (window subsets, easy saliency pairs) comes from a numpy Generator seeded with
(seed, epoch, index), so an epoch is reproducible and a resumed run sees the same targets:
call ``set_epoch(epoch)`` at the start of every epoch, as with a DistributedSampler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from masra.config import SALIENCY_ONLY_DATASETS, DataConfig
from masra.data.aligned_priors import AlignedPriors, PriorLoader, prior_dim
from masra.data.annotations import AnnotationRecord
from masra.data.batch import GroundingBatch, pad_sequences
from masra.data.features import FeatureLoader
from masra.data.targets import SaliencyTargets, label_saliency, qvh_saliency, span_targets, window_saliency
from masra.errors import MasraError


@dataclass
class Sample:
    """One item of the dataset, before padding."""

    video_feats: torch.Tensor  # [L, Dv]
    query_feats: torch.Tensor  # [N, Dt]
    meta: dict[str, Any]
    span_targets: torch.Tensor | None = None  # [n, 2] (center, width)
    saliency: SaliencyTargets | None = None
    priors: AlignedPriors | None = None


class GroundingDataset(Dataset):
    """Features + targets for a list of annotation records.

    ``train=True`` requires labels on every record. With ``train=False`` targets are still built when
    every record has labels (validation loss) and are None otherwise (e.g. the QVH test release).
    ``feature_cache=True`` keeps processed features in memory (per process) after the first read.
    ``input_dims`` (video dim with TEF, text dim): the dims of the model that reads the samples (inference: the
    checkpoint's ``ModelDims``); features of other dims are an error.
    """

    def __init__(
        self,
        records: list[AnnotationRecord],
        cfg: DataConfig,
        *,
        train: bool,
        feature_cache: bool = False,
        seed: int = 0,
        input_dims: tuple[int, int] | None = None,
    ) -> None:
        self.records = records
        self.cfg = cfg
        self.train = train
        self.seed = seed
        self.epoch = 0
        if train:
            for record in records:
                if not record.has_labels:
                    field = "label" if record.dataset in SALIENCY_ONLY_DATASETS else "relevant_windows"
                    raise MasraError("training needs labelled rows", file=record.file, line=record.line, field=field)
        self.with_targets = bool(records) and all(r.has_labels for r in records)
        video_dim, text_dim = input_dims if input_dims is not None else (None, None)
        self.features = FeatureLoader(cfg, video_dim=video_dim, text_dim=text_dim)
        self.priors = PriorLoader(cfg.prior_dir, cfg.clip_length) if cfg.prior_dir else None
        self.prior_coverage = self.priors.coverage([r.vid for r in records]) if self.priors else 0.0
        self._video_cache: dict[str, np.ndarray] | None = {} if feature_cache else None
        self._text_cache: dict[Any, np.ndarray] | None = {} if feature_cache else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def _video(self, vid: str) -> np.ndarray:
        if self._video_cache is None:
            return self.features.video(vid)
        if vid not in self._video_cache:
            self._video_cache[vid] = self.features.video(vid)
        return self._video_cache[vid]

    def _text(self, qid: int | str) -> np.ndarray:
        if self._text_cache is None:
            return self.features.text(qid)
        if qid not in self._text_cache:
            self._text_cache[qid] = self.features.text(qid)
        return self._text_cache[qid]

    def rng(self, index: int) -> np.random.Generator:
        """The Generator of sample ``index`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index: int) -> Sample:
        record = self.records[index]
        video, meta = record.sample(self._video(record.vid))  # TVSum / YouTube: one clip per label row
        ctx_l = meta["ctx_l"]
        sample = Sample(torch.from_numpy(np.ascontiguousarray(video)), torch.from_numpy(self._text(record.qid)), meta)
        if self.with_targets:
            self._add_targets(sample, record, ctx_l, self.rng(index))
        if self.priors is not None:
            sample.priors = self.priors.load(record.vid, ctx_l)
        return sample

    def _add_targets(self, sample: Sample, record: AnnotationRecord, ctx_l: int, rng: np.random.Generator) -> None:
        cl = self.cfg.clip_length
        if record.label is not None:
            sample.span_targets = torch.zeros(0, 2)  # saliency-only datasets have no moments
            sample.saliency = label_saliency(record.label, ctx_l, record.dataset)
            return
        assert record.relevant_windows is not None
        sample.span_targets = torch.from_numpy(span_targets(record.relevant_windows, ctx_l, cl, self.cfg.max_windows, rng))
        if record.relevant_clip_ids is not None and record.saliency_scores is not None:
            sample.saliency = qvh_saliency(record.relevant_clip_ids, record.saliency_scores, ctx_l, rng)
        else:
            sample.saliency = window_saliency(record.relevant_windows, ctx_l, cl, rng)

    def feature_dims(self) -> tuple[int, int, int | None]:
        """(video dim incl. TEF, text dim, prior dim or None), read from the first record's files."""
        if not self.records:
            raise MasraError("no records to read feature dimensions from")
        return feature_dims(self.cfg, self.records[0], self.features)


def feature_dims(
    cfg: DataConfig, record: AnnotationRecord, loader: FeatureLoader | None = None
) -> tuple[int, int, int | None]:
    """(v_feat_dim incl. TEF, t_feat_dim, prior dim or None) from one record's feature files and the prior folder."""
    loader = loader or FeatureLoader(cfg)
    v_dim = loader.video(record.vid).shape[1]
    t_dim = loader.text(record.qid).shape[1]
    return v_dim, t_dim, prior_dim(cfg.prior_dir) if cfg.prior_dir else None


def _collate_priors(samples: list[Sample], n_clips: int) -> dict[str, torch.Tensor]:
    with_priors = [s.priors for s in samples if s.priors is not None]
    dim = with_priors[0].caption_emb.shape[1]
    n_events = max(p.event_emb.shape[0] for p in with_priors)
    batch = len(samples)
    out = {
        "has_priors": torch.zeros(batch),
        "caption_emb": torch.zeros(batch, n_clips, dim),
        "caption_mask": torch.zeros(batch, n_clips),
        "event_emb": torch.zeros(batch, n_events, dim),
        "event_spans": torch.zeros(batch, n_events, 2, dtype=torch.long),
        "event_mask": torch.zeros(batch, n_events),
    }
    for i, sample in enumerate(samples):
        p = sample.priors
        if p is None:
            continue
        length, m = p.caption_emb.shape[0], p.event_emb.shape[0]
        out["has_priors"][i] = 1.0
        out["caption_emb"][i, :length] = torch.from_numpy(p.caption_emb)
        out["caption_mask"][i, :length] = torch.from_numpy(p.caption_valid.astype(np.float32))
        out["event_emb"][i, :m] = torch.from_numpy(p.event_emb)
        out["event_spans"][i, :m] = torch.from_numpy(p.event_spans)
        out["event_mask"][i, :m] = 1.0
    return out


def collate(samples: list[Sample]) -> GroundingBatch:
    """Pad a list of samples into a GroundingBatch (targets only when every sample has them)."""
    video, video_mask = pad_sequences([s.video_feats for s in samples])
    query, query_mask = pad_sequences([s.query_feats for s in samples])
    batch = GroundingBatch(video, video_mask, query, query_mask, meta=[s.meta for s in samples])
    n_clips = video.shape[1]
    if all(s.saliency is not None and s.span_targets is not None for s in samples):
        saliency = [s.saliency for s in samples]
        batch.span_targets = [s.span_targets for s in samples]  # type: ignore[misc]
        batch.saliency_pos_idx = torch.from_numpy(np.stack([t.pos_idx for t in saliency]))  # type: ignore[union-attr]
        batch.saliency_neg_idx = torch.from_numpy(np.stack([t.neg_idx for t in saliency]))  # type: ignore[union-attr]
        batch.saliency_all_labels = pad_sequences([torch.from_numpy(t.all_labels) for t in saliency])[0]  # type: ignore[union-attr]
        batch.relevant_mask = pad_sequences([torch.from_numpy(t.relevant) for t in saliency])[0]  # type: ignore[union-attr]
    if any(s.priors is not None for s in samples):
        for name, value in _collate_priors(samples, n_clips).items():
            setattr(batch, name, value)
    return batch
