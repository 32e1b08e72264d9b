"""The synthetic dataset: deterministic, cached, in the anchors' file layout, learnable but not trivial."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TINY_TRAIN, TINY_VAL, RefusingEncoder
from scipy.stats import rankdata

from masra.config import DataConfig
from masra.data.jsonl import read_jsonl
from masra.lab.demo.synthetic import SyntheticSpec, build_synthetic_dataset, shipped_rows, signal_map
from masra.errors import MasraError


def _auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive clip scores above a random negative one."""
    ranks = rankdata(scores)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _clips(root, split):
    """Per row: L2-normalised clip features (as the loader normalises them), relevance mask, query embedding."""
    out = []
    for row in read_jsonl(root / f"{split}.jsonl"):
        feats = np.load(root / "video" / f"{row['vid']}.npz")["features"]
        feats = feats / (np.linalg.norm(feats, axis=1, keepdims=True) + 1e-5)
        relevant = np.zeros(len(feats), dtype=bool)
        relevant[[c for c in row["relevant_clip_ids"] if c < len(feats)]] = True
        query = np.load(root / "text" / f"qid{row['qid']}.npz")["pooler_output"]
        out.append((feats, relevant, query))
    return out


def test_shipped_rows_are_real_qvhighlights_rows():
    train, val = shipped_rows("train"), shipped_rows("val")
    assert len(train) == 1200 and len(val) == 400
    assert not {r["vid"] for r in train} & {r["vid"] for r in val}
    for row in train[:50]:
        assert set(row) == {"qid", "query", "duration", "vid", "relevant_windows", "relevant_clip_ids", "saliency_scores"}
        assert len(row["saliency_scores"]) == len(row["relevant_clip_ids"])
    with pytest.raises(MasraError, match="unknown split"):
        shipped_rows("test")


def test_files_follow_the_anchor_layout(tiny_dataset_dir):
    manifest = json.loads((tiny_dataset_dir / "manifest.json").read_text())
    assert manifest["rows"] == {"train": TINY_TRAIN, "val": TINY_VAL}
    spec = SyntheticSpec()
    for row in read_jsonl(tiny_dataset_dir / "train.jsonl"):
        with np.load(tiny_dataset_dir / "video" / f"{row['vid']}.npz") as video:
            assert list(video) == ["features"]
            assert video["features"].shape == (int(row["duration"] / 2), spec.video_dim)
            assert video["features"].dtype == np.float32
        with np.load(tiny_dataset_dir / "text" / f"qid{row['qid']}.npz") as text:
            tokens, pooled = text["last_hidden_state"], text["pooler_output"]
            assert tokens.ndim == 2 and tokens.shape[1] == 384 and pooled.shape == (384,)
            # the pooled embedding is MiniLM's own sentence embedding: mean of the token states, normalised
            mean = tokens.mean(0)
            np.testing.assert_allclose(pooled, mean / np.linalg.norm(mean), atol=1e-5)
        with np.load(tiny_dataset_dir / "priors" / f"{row['vid']}.npz") as prior:
            n = int(row["duration"] / 2)
            assert prior["clip_caption_emb"].shape == (n, 384) and prior["clip_caption_valid"].shape == (n,)
            assert prior["event_emb"].shape[0] == prior["event_spans"].shape[0] >= 1
            valid = prior["clip_caption_valid"]
            np.testing.assert_allclose(np.linalg.norm(prior["clip_caption_emb"][valid], axis=1), 1.0, atol=1e-5)
            assert (prior["event_spans"][:, 0] < prior["event_spans"][:, 1]).all()
            assert (prior["event_spans"] >= 0).all() and (prior["event_spans"] <= row["duration"]).all()
    # priors are training-time only: no prior files for the val videos
    assert not any((tiny_dataset_dir / "priors" / f"{r['vid']}.npz").exists() for r in read_jsonl(tiny_dataset_dir / "val.jsonl"))


def test_masra_data_reads_the_dataset(tiny_dataset_dir):
    from masra.data.dataset import GroundingDataset, collate
    from masra.data.splits import load_records

    cfg = DataConfig(
        train_path=str(tiny_dataset_dir / "train.jsonl"),
        v_feat_dirs=[str(tiny_dataset_dir / "video")],
        t_feat_dir=str(tiny_dataset_dir / "text"),
        prior_dir=str(tiny_dataset_dir / "priors"),
    )
    dataset = GroundingDataset(load_records(cfg.train_path, cfg), cfg, train=True)
    assert dataset.prior_coverage == 1.0
    batch = collate([dataset[i] for i in range(4)])
    assert batch.video_feats.shape[2] == SyntheticSpec().video_dim + 2  # + TEF
    assert batch.query_feats.shape[2] == 384
    assert batch.caption_emb is not None and batch.caption_emb.shape[2] == 384
    assert batch.event_emb is not None and batch.has_priors.tolist() == [1.0] * 4


def test_same_seed_same_files_other_seed_other_files(tmp_path, minilm):
    a = build_synthetic_dataset(tmp_path / "a", seed=5, n_train=4, n_val=2, encoder=minilm)
    b = build_synthetic_dataset(tmp_path / "b", seed=5, n_train=4, n_val=2, encoder=minilm)
    c = build_synthetic_dataset(tmp_path / "c", seed=6, n_train=4, n_val=2, encoder=minilm)
    for sub in ("video", "text", "priors"):
        names = sorted(p.name for p in (a.root / sub).iterdir())
        assert names == sorted(p.name for p in (b.root / sub).iterdir())
        for name in names:
            with np.load(a.root / sub / name) as x, np.load(b.root / sub / name) as y:
                for key in x:
                    np.testing.assert_array_equal(x[key], y[key])
    vid = read_jsonl(a.train_path)[0]["vid"]
    assert not np.array_equal(np.load(a.video_dir / f"{vid}.npz")["features"], np.load(c.video_dir / f"{vid}.npz")["features"])


class CountingEncoder:
    """Passes calls through to MiniLM and records how many texts each method encoded."""

    def __init__(self, encoder):
        self.encoder, self.name, self.encoded = encoder, encoder.name, {"encode": 0, "tokens": 0}

    def encode(self, texts, *, batch_size=64):
        self.encoded["encode"] += len(texts)
        return self.encoder.encode(texts, batch_size=batch_size)

    def tokens(self, texts, *, batch_size=64):
        self.encoded["tokens"] += len(texts)
        return self.encoder.tokens(texts, batch_size=batch_size)


def test_only_the_training_paraphrases_are_encoded(tmp_path, minilm):
    counting = CountingEncoder(minilm)
    ds = build_synthetic_dataset(tmp_path / "data", seed=5, n_train=4, n_val=3, encoder=counting)
    variants = SyntheticSpec().caption_variants
    # every query's token states, but sentence embeddings only of the paraphrases the train priors use
    assert counting.encoded == {"tokens": 4 + 3, "encode": 4 * variants}
    assert len(list(ds.prior_dir.iterdir())) == 4


def test_cache_is_reused_and_regenerated_when_the_spec_changes(tmp_path, tiny_dataset_dir, minilm):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(tiny_dataset_dir, root)
    reused = build_synthetic_dataset(root, seed=0, n_train=TINY_TRAIN, n_val=TINY_VAL, encoder=RefusingEncoder())
    assert reused.manifest["seed"] == 0
    with pytest.raises(AssertionError, match="regenerated"):
        build_synthetic_dataset(root, seed=1, n_train=TINY_TRAIN, n_val=TINY_VAL, encoder=RefusingEncoder())
    assert json.loads((root / "manifest.json").read_text())["seed"] == 0  # a failed regeneration leaves the old data
    noisier = build_synthetic_dataset(root, seed=0, spec=SyntheticSpec(noise=9.0), n_train=4, n_val=2, encoder=minilm)
    assert noisier.manifest["spec"]["noise"] == 9.0
    assert len(list((root / "video").iterdir())) == 6


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(MasraError, match="not a masra synthetic dataset"):
        build_synthetic_dataset(tmp_path / "mine", seed=0, n_train=2, n_val=2, encoder=RefusingEncoder())
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_planted_signal_is_learnable_but_not_trivial(tiny_dataset_dir):
    """Knowing the hidden text-to-video map, the query's mapped embedding ranks relevant clips above the
    background; without it (a wrong map) or from the features alone (their norm) relevance is invisible, so a
    model has to learn the map from the training data."""
    spec = SyntheticSpec()
    rows = _clips(tiny_dataset_dir, "train") + _clips(tiny_dataset_dir, "val")
    queries = np.stack([q for _, _, q in rows])
    oracle_dirs = signal_map(queries, 0, spec)
    wrong_dirs = signal_map(queries, 1, spec)  # the map of another seed
    oracle, wrong, norm = [], [], []
    for (feats, relevant, _), good, bad in zip(rows, oracle_dirs, wrong_dirs):
        if relevant.all():
            continue
        oracle.append(_auc(feats[:, : spec.signal_dim] @ good, relevant))
        wrong.append(_auc(feats[:, : spec.signal_dim] @ bad, relevant))
        norm.append(_auc(np.linalg.norm(feats[:, : spec.signal_dim], axis=1), relevant))
    assert np.mean(oracle) > 0.9
    assert abs(np.mean(wrong) - 0.5) < 0.1
    assert abs(np.mean(norm) - 0.5) < 0.15
