"""GroundingDataset + collate on small synthetic feature folders: padding, targets, determinism, priors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from masra.config import DataConfig
from masra.data.annotations import load_annotations
from masra.data.dataset import GroundingDataset, collate
from masra.errors import MasraError
from required import SHARED_DATA, require_path

CLIP = 2.0
# vid -> number of clips of its features
VIDEOS = {"va_0.0_150.0": 12, "vb_0.0_150.0": 9, "vc_0.0_150.0": 15}


def qvh_row(qid: int, vid: str, windows: list[list[int]], seed: int) -> dict:
    rng = np.random.default_rng(seed)
    clip_ids = sorted({c for st, ed in windows for c in range(st // 2, ed // 2)})
    return {
        "qid": qid, "query": f"query {qid}", "duration": VIDEOS[vid] * CLIP, "vid": vid, "relevant_windows": windows,
        "relevant_clip_ids": clip_ids, "saliency_scores": rng.integers(0, 5, size=(len(clip_ids), 3)).tolist(),
    }


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[DataConfig, Path]:
    rng = np.random.default_rng(0)
    for source, dim in (("slowfast", 5), ("clip", 3)):
        (tmp_path / source).mkdir()
        for vid, n in VIDEOS.items():
            np.savez(tmp_path / source / f"{vid}.npz", features=rng.normal(size=(n, dim)))
    (tmp_path / "text").mkdir()
    for qid in range(10):
        np.savez(tmp_path / "text" / f"qid{qid}.npz", last_hidden_state=rng.normal(size=(3 + qid, 4)))
    rows = [
        qvh_row(0, "va_0.0_150.0", [[2, 8]], 0),
        qvh_row(1, "vb_0.0_150.0", [[0, 4], [10, 14]], 1),
        qvh_row(2, "vc_0.0_150.0", [[0, 2], [4, 6], [8, 10], [12, 14], [16, 18], [20, 22], [24, 30]], 2),
        qvh_row(3, "va_0.0_150.0", [[0, 24]], 3),  # every clip relevant
    ]
    write_jsonl(tmp_path / "train.jsonl", rows)
    cfg = DataConfig(
        v_feat_dirs=[str(tmp_path / "slowfast"), str(tmp_path / "clip")], t_feat_dir=str(tmp_path / "text"), clip_length=CLIP
    )
    return cfg, tmp_path


def test_collate_pads_and_masks(setup: tuple[DataConfig, Path]) -> None:
    cfg, root = setup
    dataset = GroundingDataset(load_annotations(root / "train.jsonl"), cfg, train=True)
    samples = [dataset[0], dataset[1], dataset[2]]
    batch = collate(samples)
    lengths, tokens = [12, 9, 15], [3, 4, 5]
    assert batch.video_feats.shape == (3, 15, 5 + 3 + 2) and batch.query_feats.shape == (3, 5, 4)
    assert batch.video_mask.sum(1).tolist() == lengths and batch.query_mask.sum(1).tolist() == tokens
    for i, (n, t) in enumerate(zip(lengths, tokens)):
        assert torch.equal(batch.video_feats[i, :n], samples[i].video_feats)
        assert batch.video_feats[i, n:].abs().sum() == 0 and batch.query_feats[i, t:].abs().sum() == 0
        assert batch.meta[i]["ctx_l"] == n and batch.meta[i]["qid"] == i
    assert batch.saliency_all_labels.shape == batch.relevant_mask.shape == (3, 15)
    assert batch.saliency_pos_idx.dtype == torch.long and batch.saliency_pos_idx.shape == (3, 2)
    assert batch.has_priors is None and batch.caption_emb is None
    assert len(batch.to("cpu")) == 3


def test_span_targets_are_normalised_center_width(setup: tuple[DataConfig, Path]) -> None:
    cfg, root = setup
    dataset = GroundingDataset(load_annotations(root / "train.jsonl"), cfg, train=True)
    for index in (0, 1):
        record, sample = dataset.records[index], dataset[index]
        scale = sample.meta["ctx_l"] * CLIP
        expected = [[(st + ed) / 2 / scale, (ed - st) / scale] for st, ed in record.relevant_windows]
        np.testing.assert_allclose(sample.span_targets.numpy(), expected, rtol=1e-6)
    many = dataset[2]
    windows = dataset.records[2].relevant_windows
    assert many.span_targets.shape == (cfg.max_windows, 2)
    scale = 15 * CLIP
    all_targets = {((st + ed) / 2 / scale, (ed - st) / scale) for st, ed in windows}
    for c, w in many.span_targets.tolist():
        assert any(abs(c - c2) < 1e-6 and abs(w - w2) < 1e-6 for c2, w2 in all_targets)
    assert len({tuple(r) for r in many.span_targets.tolist()}) == cfg.max_windows


def test_qvh_saliency_pairs_and_labels(setup: tuple[DataConfig, Path]) -> None:
    cfg, root = setup
    dataset = GroundingDataset(load_annotations(root / "train.jsonl"), cfg, train=True)
    for index, record in enumerate(dataset.records):
        sample = dataset[index]
        sal, n = sample.saliency, sample.meta["ctx_l"]
        sums = {c: sum(s) for c, s in zip(record.relevant_clip_ids, record.saliency_scores)}
        hard_pos, easy_pos = sal.pos_idx.tolist()
        hard_neg, easy_neg = sal.neg_idx.tolist()
        assert sums[hard_pos] == max(sums.values()) and sums[hard_neg] == min(sums.values())
        assert easy_pos in sums
        if len(sums) < n:
            assert easy_neg not in sums and 0 <= easy_neg < n
        else:  # every clip relevant: the easy pair repeats the hard pair
            assert (easy_pos, easy_neg) == (hard_pos, hard_neg)
        expected = np.zeros(n, dtype=np.float32)
        for c, s in sums.items():
            expected[c] = s
        np.testing.assert_array_equal(sal.all_labels, expected)
        np.testing.assert_array_equal(sal.relevant, (expected > 0) | np.isin(np.arange(n), list(sums)))


def test_single_window_and_label_datasets(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for folder in ("v", "t"):
        (tmp_path / folder).mkdir()
    np.savez(tmp_path / "v" / "CH1.npz", features=rng.normal(size=(30, 4)))
    np.savez(tmp_path / "v" / "TV1.npz", features=rng.normal(size=(8, 4)))
    np.savez(tmp_path / "t" / "7.npz", last_hidden_state=rng.normal(size=(5, 4)))
    np.savez(tmp_path / "t" / "TV1.npz", last_hidden_state=rng.normal(size=(5, 4)))
    charades = write_jsonl(tmp_path / "ch.jsonl", [{"qid": 7, "query": "q", "duration": 30.2, "vid": "CH1", "relevant_windows": [[4.5, 11.2]]}])
    label = rng.integers(1, 6, size=(6, 20)).astype(float).tolist()
    tvsum = write_jsonl(tmp_path / "tv.jsonl", [{"qid": "TV1", "query": "t", "duration": 6, "vid": "TV1", "domain": "BK", "label": label}])
    cfg = DataConfig(v_feat_dirs=[str(tmp_path / "v")], t_feat_dir=str(tmp_path / "t"), t_feat_prefix="", clip_length=1.0)

    ds = GroundingDataset(load_annotations(charades), cfg, train=True)
    first, last = 4, 10  # [int(4.5 / 1), min(int(11.2 / 1), 30) - 1]
    for epoch in range(5):
        ds.set_epoch(epoch)
        sal = ds[0].saliency
        assert all(first <= p <= last for p in sal.pos_idx) and len(set(sal.pos_idx.tolist())) == 2
        assert all(not first <= q <= last and 0 <= q < 30 for q in sal.neg_idx)
    expected = np.zeros(30, dtype=np.float32)
    expected[first : last + 1] = 1
    np.testing.assert_array_equal(sal.all_labels, expected)
    np.testing.assert_array_equal(sal.relevant, expected)

    cfg.clip_length = 2.0
    sample = GroundingDataset(load_annotations(tvsum), cfg, train=True)[0]
    assert sample.video_feats.shape[0] == 6  # trimmed from 8 feature rows to the 6 label rows
    expected = (np.asarray(label) - 1).sum(axis=1) * 12 / 80
    np.testing.assert_allclose(sample.saliency.all_labels, expected, rtol=1e-6)
    pos, neg = sample.saliency.pos_idx.tolist(), sample.saliency.neg_idx.tolist()
    assert pos[0] == pos[1] and neg[0] == neg[1]  # one hardest pair, in both slots
    assert expected[pos[0]] == expected.max() and expected[neg[0]] == expected.min()
    assert sample.span_targets.shape == (0, 2)


def test_randomness_is_reproducible_per_seed_and_epoch(setup: tuple[DataConfig, Path]) -> None:
    cfg, root = setup
    records = load_annotations(root / "train.jsonl")

    def draw(dataset: GroundingDataset, epoch: int) -> list:
        dataset.set_epoch(epoch)
        return [(dataset[2].span_targets.tolist(), dataset[i].saliency.pos_idx.tolist(), dataset[i].saliency.neg_idx.tolist()) for i in range(3)]

    a, b = GroundingDataset(records, cfg, train=True, seed=5), GroundingDataset(records, cfg, train=True, seed=5)
    assert draw(a, 3) == draw(b, 3)
    assert draw(a, 3) == draw(a, 3)  # resumable: the same epoch gives the same targets again
    assert any(draw(a, e) != draw(a, 3) for e in range(4, 10))
    other = GroundingDataset(records, cfg, train=True, seed=6)
    assert any(draw(other, e) != draw(a, e) for e in range(5))


def test_unlabelled_rows_give_no_targets_and_cannot_train(setup: tuple[DataConfig, Path]) -> None:
    cfg, root = setup
    rows = [{"qid": 0, "query": "q", "duration": 24, "vid": "va_0.0_150.0"}]
    records = load_annotations(write_jsonl(root / "test.jsonl", rows))
    batch = collate([GroundingDataset(records, cfg, train=False)[0]])
    assert batch.span_targets is None and batch.saliency_all_labels is None and batch.saliency_pos_idx is None
    with pytest.raises(MasraError) as info:
        GroundingDataset(records, cfg, train=True)
    assert (info.value.line, info.value.field) == (1, "relevant_windows")


def test_priors_in_the_batch(setup: tuple[DataConfig, Path]) -> None:
    cfg, root = setup
    prior_dir = root / "priors"
    prior_dir.mkdir()
    np.savez(prior_dir / "va_0.0_150.0.npz", clip_caption_emb=np.ones((12, 6), np.float32),
             event_emb=np.ones((3, 6), np.float32), event_spans=np.array([[0, 4], [6, 10], [20, 24]], np.float32))
    cfg.prior_dir = str(prior_dir)
    dataset = GroundingDataset(load_annotations(root / "train.jsonl"), cfg, train=True)
    assert dataset.prior_coverage == pytest.approx(1 / 3)
    batch = collate([dataset[1], dataset[0]])  # vb (9 clips, no priors), va (12 clips, priors)
    assert batch.has_priors.tolist() == [0.0, 1.0]
    assert batch.caption_emb.shape == (2, 12, 6) and batch.caption_mask.sum(1).tolist() == [0.0, 12.0]
    assert batch.event_emb.shape == (2, 3, 6) and batch.event_mask.tolist() == [[0, 0, 0], [1, 1, 1]]
    assert batch.event_spans[1].tolist() == [[0, 1], [3, 4], [10, 11]]
    assert dataset.feature_dims() == (10, 4, 6)


def test_dataloader_with_feature_cache(setup: tuple[DataConfig, Path]) -> None:
    cfg, root = setup
    dataset = GroundingDataset(load_annotations(root / "train.jsonl"), cfg, train=True, feature_cache=True)
    batches = list(DataLoader(dataset, batch_size=2, collate_fn=collate))
    assert [len(b) for b in batches] == [2, 2]
    assert torch.equal(batches[0].video_feats[0, :12], dataset[0].video_feats)
    assert set(dataset._video_cache) == set(VIDEOS)


@pytest.mark.parametrize(
    "name,clip_length",
    [("qvhighlights/highlight_val_release.jsonl", 2.0), ("charades_sta/charades_sta_test_tvr_format.jsonl", 1.0)],
)
def test_targets_on_real_annotations_stay_in_range(name: str, clip_length: float) -> None:
    """Targets of every real row, with ctx_l = the duration's clip count as the features would give."""
    from masra.data.targets import qvh_saliency, span_targets, window_saliency

    rng = np.random.default_rng(0)
    for record in load_annotations(require_path(SHARED_DATA / name, "real annotations")):
        ctx_l = min(int(record.duration / clip_length), 75 if clip_length == 2.0 else 10**6)
        spans = span_targets(record.relevant_windows, ctx_l, clip_length, 5, rng)
        assert 1 <= len(spans) <= 5 and (spans[:, 1] > 0).all()
        if record.saliency_scores is not None:
            sal = qvh_saliency(record.relevant_clip_ids, record.saliency_scores, ctx_l, rng)
        else:
            sal = window_saliency(record.relevant_windows, ctx_l, clip_length, rng)
        assert sal.all_labels.shape == (ctx_l,)
        for idx in (*sal.pos_idx, *sal.neg_idx):
            assert 0 <= idx < ctx_l
        if record.saliency_scores is not None:  # hard positive has the largest annotator sum
            assert sal.all_labels[sal.pos_idx[0]] >= sal.all_labels[sal.neg_idx[0]]
        else:  # positives inside the window; negatives outside, or the positives when nothing is outside
            assert (sal.all_labels[sal.pos_idx] == 1).all()
            assert (sal.all_labels[sal.neg_idx] == 0).all() or (sal.neg_idx == sal.pos_idx).all()
