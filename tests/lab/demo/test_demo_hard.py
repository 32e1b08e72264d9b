"""The hard regime: anchor-sized float16 features, a weak dense signal behind another family of maps, slow drift."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TINY_TRAIN, TINY_VAL
from test_demo_synthetic import _auc

from masra.config import DataConfig
from masra.data.jsonl import read_jsonl
from masra.lab.demo.hard import HardSpec, slow_drift
from masra.lab.demo.regimes import regime_spec
from masra.lab.demo.synthetic import SyntheticSpec, build_synthetic_dataset
from masra.errors import MasraError


@pytest.fixture(scope="module")
def hard_dir(tmp_path_factory, minilm):
    root = tmp_path_factory.mktemp("hard") / "data"
    build_synthetic_dataset(root, seed=0, spec=HardSpec(), n_train=TINY_TRAIN, n_val=TINY_VAL, encoder=minilm)
    return root


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-5)


def test_regimes_by_name():
    assert isinstance(regime_spec("planted"), SyntheticSpec)
    assert isinstance(regime_spec("hard"), HardSpec)
    with pytest.raises(MasraError, match="unknown data regime 'easy'"):
        regime_spec("easy")


def test_two_float16_sources_of_the_anchors_size_read_as_2818_dims(hard_dir):
    manifest = json.loads((hard_dir / "manifest.json").read_text())
    assert manifest["regime"] == "hard" and manifest["video_sources"] == ["slowfast", "clip"]
    assert manifest["video_dim"] == 2816
    row = read_jsonl(hard_dir / "train.jsonl")[0]
    n = int(row["duration"] / 2)
    for source, width in (("slowfast", 2304), ("clip", 512)):
        with np.load(hard_dir / "video" / source / f"{row['vid']}.npz") as video:
            assert video["features"].shape == (n, width) and video["features"].dtype == np.float16
    from masra.data.dataset import GroundingDataset, collate
    from masra.data.splits import load_records

    cfg = DataConfig(train_path=str(hard_dir / "train.jsonl"), t_feat_dir=str(hard_dir / "text"),
                     v_feat_dirs=[str(hard_dir / "video" / "slowfast"), str(hard_dir / "video" / "clip")],
                     prior_dir=str(hard_dir / "priors"))
    dataset = GroundingDataset(load_records(cfg.train_path, cfg), cfg, train=True)
    batch = collate([dataset[i] for i in range(2)])
    assert batch.video_feats.shape[2] == 2816 + 2 and batch.video_feats.dtype.is_floating_point
    assert dataset.prior_coverage == 1.0


def test_the_signal_is_learnable_only_through_the_hidden_map_and_weak_in_every_dimension(hard_dir):
    spec = HardSpec()
    rows = read_jsonl(hard_dir / "train.jsonl") + read_jsonl(hard_dir / "val.jsonl")
    queries = np.stack([np.load(hard_dir / "text" / f"qid{r['qid']}.npz")["pooler_output"] for r in rows])
    oracle_dirs, wrong_dirs = spec.signals(queries, 0), spec.signals(queries, 1)
    assert np.abs(oracle_dirs).max() < 0.15  # no coordinate holds more than a sliver of a unit signal
    oracle, wrong, best_single = [], [], []
    for row, good, bad in zip(rows, oracle_dirs, wrong_dirs):
        clip = _unit_rows(np.load(hard_dir / "video" / "clip" / f"{row['vid']}.npz")["features"])
        relevant = np.zeros(len(clip), dtype=bool)
        relevant[[c for c in row["relevant_clip_ids"] if c < len(clip)]] = True
        if relevant.all() or not relevant.any():
            continue
        oracle.append(_auc(clip @ good[2304:], relevant))
        wrong.append(_auc(clip @ bad[2304:], relevant))
        # the single dimension that carries the most of this query's signal, read alone
        top = int(np.argmax(np.abs(good[2304:])))
        best_single.append(_auc(clip[:, top] * np.sign(good[2304 + top]), relevant))
    assert np.mean(oracle) > 0.75
    assert abs(np.mean(wrong) - 0.5) < 0.1
    assert np.mean(best_single) < np.mean(oracle) - 0.15


def test_slow_drift_wanders_along_the_video():
    drift = slow_drift(75, 512, 0.8, np.random.default_rng(0))
    assert np.sqrt((drift**2).sum(axis=1).mean()) == pytest.approx(0.8)
    unit = _unit_rows(drift)
    neighbours = (unit[1:] * unit[:-1]).sum(axis=1).mean()
    far = (unit[:10] * unit[-10:]).sum(axis=1).mean()
    assert neighbours > 0.9 and far < 0.0  # close clips share it, the two ends of the video do not


def test_priors_keep_the_documented_layout_with_the_hard_noise(hard_dir):
    spec = HardSpec()
    assert spec.priors.wrong_caption == 0.15 and spec.priors.span_shift_s == 4.0
    manifest = json.loads((hard_dir / "manifest.json").read_text())
    assert 0.05 < manifest["stats"]["train"]["wrong_caption_rate"] < 0.3
    row = read_jsonl(hard_dir / "train.jsonl")[0]
    with np.load(hard_dir / "priors" / f"{row['vid']}.npz") as prior:
        assert set(prior) == {"clip_caption_emb", "clip_caption_valid", "event_emb", "event_spans"}


def test_demo_and_ablate_take_the_regime_and_ablate_a_config():
    from masra.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args(["demo", "--out", "d"]).data == "planted"
    assert parser.parse_args(["demo", "--out", "d", "--data", "hard"]).data == "hard"
    assert parser.parse_args(["ablate", "--out", "d", "--data", "hard"]).data == "hard"
    assert parser.parse_args(["ablate", "--out", "d", "--config", "mine.yaml"]).config == "mine.yaml"
    for wrong in (["demo", "--out", "d", "--data", "easy"], ["ablate", "--out", "d", "--data", "hard", "--config", "x"]):
        with pytest.raises(SystemExit):
            parser.parse_args(wrong)
