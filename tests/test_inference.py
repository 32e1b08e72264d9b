"""Grounder (Python API) and checkpoint evaluation against the predictions made during training."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from masra.errors import MasraError
from masra.inference import Grounder, evaluate_checkpoint, predict_split
from masra.train.trainer import train
from train.tiny_data import make_tiny_dataset, tiny_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("inference")
    paths = make_tiny_dataset(root / "data")
    result = train(tiny_config(paths, root / "run", "train.epochs=2"), progress=False)
    return paths, result


def _raw_features(paths, record):
    video = np.load(paths["video"] / f"{record.vid}.npz")["features"]
    query = np.load(paths["text"] / f"qid{record.qid}.npz")["last_hidden_state"]
    return video, query


def test_grounder_reproduces_the_official_predictions_from_raw_features(trained):
    paths, result = trained
    official = predict_split(result.best_checkpoint, split="val", device="cpu", progress=False)
    grounder = Grounder.from_checkpoint(result.best_checkpoint, device="cpu")  # compared with a CPU run
    raw = [_raw_features(paths, r) for r in official.records]
    # Same batch composition as the evaluation loader (eval_batch_size 4), so outputs are bit-identical.
    preds = grounder.predict_batch([v for v, _ in raw], [q for _, q in raw],
                                   [r.duration for r in official.records])
    for pred, row in zip(preds, official.rows):
        assert [list(w) for w in pred.windows] == row["pred_relevant_windows"]
        assert pred.saliency.astype(np.float16).tolist() == row["pred_saliency_scores"]


def test_single_prediction_and_tef_input_agree_with_batch(trained):
    paths, result = trained
    grounder = Grounder.from_checkpoint(result.run_dir, device="cpu")  # a run folder means its last checkpoint
    records = predict_split(result.run_dir, split="val", device="cpu", progress=False).records
    video, query = _raw_features(paths, records[0])
    single = grounder.predict(video, query, duration=records[0].duration, top_k=3)
    assert len(single.windows) == 3
    assert [w[2] for w in single.windows] == sorted((w[2] for w in single.windows), reverse=True)
    prepared = grounder.prepare_video(video)
    assert prepared.shape == (video.shape[0], video.shape[1] + 2)
    np.testing.assert_allclose(prepared[:, -2:], np.stack([np.arange(len(video)), np.arange(1, len(video) + 1)], 1)
                               / len(video), rtol=1e-6)
    with_tef = grounder.predict(torch.from_numpy(prepared), query, duration=records[0].duration, top_k=3)
    assert with_tef.windows == single.windows
    np.testing.assert_array_equal(with_tef.saliency, single.saliency)
    # Without a duration the video is taken to be its clips x clip_length long.
    default = grounder.predict(video, query)
    explicit = grounder.predict(video, query, duration=len(video) * grounder.clip_length)
    assert default.windows == explicit.windows


def test_grounder_rejects_wrong_feature_dims(trained):
    paths, result = trained
    grounder = Grounder.from_checkpoint(result.best_checkpoint)
    with pytest.raises(MasraError, match="video feature dim 5"):
        grounder.predict(np.ones((6, 5)), np.ones((3, grounder.dims.t_feat_dim)))
    with pytest.raises(MasraError, match="query_feats"):
        grounder.predict(np.ones((6, grounder.dims.v_feat_dim)), np.ones((3, 2)))
    with pytest.raises(MasraError, match="NaN"):
        grounder.predict(np.full((6, grounder.dims.v_feat_dim), np.nan), np.ones((3, grounder.dims.t_feat_dim)))


def test_evaluate_checkpoint_equals_the_training_evaluation(trained, tmp_path):
    _, result = trained
    out = tmp_path / "metrics.json"
    metrics = evaluate_checkpoint(checkpoint=result.best_checkpoint, split="val", out=out, config_overrides=[],
                                  device="cpu")
    assert metrics == json.loads((result.best_checkpoint / "metrics.json").read_text()) == result.best_metrics
    assert json.loads(out.read_text()) == metrics
    with pytest.raises(MasraError, match="exists"):
        evaluate_checkpoint(checkpoint=result.best_checkpoint, split="val", out=out, device="cpu")
    with pytest.raises(MasraError, match="no labels"):
        evaluate_checkpoint(checkpoint=result.best_checkpoint, split="test", device="cpu")
    with pytest.raises(MasraError, match="data.test_path"):
        evaluate_checkpoint(checkpoint=result.best_checkpoint, split="test", config_overrides=["data.test_path="],
                            device="cpu")


def test_predicting_does_not_import_training_priors_lab_or_cli(trained):
    _, result = trained
    script = ("import sys; from masra.inference import Grounder, predict_split; "
              f"rows = predict_split({str(result.best_checkpoint)!r}, split='val', device='cpu', progress=False).rows; "
              f"Grounder.from_checkpoint({str(result.best_checkpoint)!r}, device='cpu'); "
              "print(len(rows), sorted(m for m in sys.modules "
              "if m.startswith(('masra.train', 'masra.priors', 'masra.lab', 'masra.cli'))))")
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout.split(" ", 1)
    assert int(out[0]) > 0 and out[1].strip() == "[]"


def test_data_dims_live_in_the_checkpoint_metadata_not_in_the_config(trained):
    _, result = trained
    info = json.loads((result.best_checkpoint / "checkpoint.json").read_text())
    assert info["dims"]["v_feat_dim"] > 0 and info["dims"]["t_feat_dim"] > 0
    for config_file in (result.run_dir / "config.yaml", result.best_checkpoint / "config.yaml"):
        data = yaml.safe_load(config_file.read_text())["data"]
        assert "v_feat_dim" not in data and "t_feat_dim" not in data
