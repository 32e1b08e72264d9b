"""masra.runtime: an export's answers on onnxruntime, with torch (and every core package but NumPy)
unimportable, against the torch Grounder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from masra.errors import MasraError
from masra.inference import Grounder
from masra.model.feature_inference import predict_sliding
from masra.runtime import OnnxGrounder
from runtime.conftest import runtime_python

# The session's exports are made in the first test that uses them: torch.export of the MASRA model takes
# minutes on a loaded 2-core machine, more than pytest's default timeout (pyproject.toml).
pytestmark = pytest.mark.timeout(1800)

SCRIPT = Path(__file__).with_name("torch_free.py")
TOLERANCE = 1e-4
# Raw features of a few (video, query) pairs: clips, tokens, duration in seconds. 90 and 200 clips are more
# than the model's max_v_l (75): one pass truncates them alike, sliding windows cover them (2 and 4 windows).
PAIRS = [(1, 1, 2.0), (10, 32, 20.0), (75, 7, 150.0), (90, 3, 180.0), (200, 5, 400.0)]


def raw_pairs(video_dim: int, query_dim: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray], list[float]]:
    """PAIRS as random raw features: video [clips, video_dim] (before TEF), query [tokens, query_dim]."""
    rng = np.random.default_rng(seed)
    videos = [rng.standard_normal((clips, video_dim)).astype(np.float32) for clips, _, _ in PAIRS]
    queries = [rng.standard_normal((tokens, query_dim)).astype(np.float32) for _, tokens, _ in PAIRS]
    return videos, queries, [duration for _, _, duration in PAIRS]


def by_score(windows) -> np.ndarray:
    return np.asarray(sorted(windows, key=lambda w: (-w[2], w[0], w[1])))


def assert_same_answers(got, expected) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert len(g["windows"]) == len(e.windows)
        # Scores are rounded to 4 decimals, and windows with equal scores (a one-clip video gives every query
        # one score) are ranked by digits beyond them: compared in (score, start, end) order. An output 1e-6
        # away may round one step off.
        np.testing.assert_allclose(by_score(g["windows"]), by_score(e.windows), rtol=0, atol=TOLERANCE + 1e-6)
        np.testing.assert_allclose(np.asarray(g["saliency"]), e.saliency, rtol=0, atol=TOLERANCE)


def test_the_runtime_answers_as_the_torch_grounder_without_torch(exported, tmp_path):
    videos, queries, durations = raw_pairs(exported.raw_video_dim, exported.dims.t_feat_dim)
    pairs_file = tmp_path / "pairs.npz"
    np.savez(pairs_file, durations=np.array(durations), **{f"video_{i}": v for i, v in enumerate(videos)},
             **{f"query_{i}": q for i, q in enumerate(queries)})
    done = subprocess.run([runtime_python(), str(SCRIPT), str(exported.export), str(pairs_file)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    grounder = Grounder.from_checkpoint(exported.checkpoint, device="cpu")
    single = [grounder.predict(v, q, duration=d) for v, q, d in zip(videos, queries, durations)]
    batched = grounder.predict_batch(videos, queries, durations)
    whole = [predict_sliding(lambda feats, length, k: grounder.predict(feats, q, duration=length, top_k=k), v,
                             grounder.inputs, len(v) * grounder.clip_length, grounder.cfg.eval,
                             grounder.cfg.eval.max_after_nms)[0] for v, q in zip(videos, queries)]
    assert [len(p.saliency) for p in whole] == [len(v) for v in videos]
    assert_same_answers(answer["predictions"], single + batched + whole)


def test_the_runtime_checks_its_inputs_like_the_grounder(exported):
    grounder = OnnxGrounder.from_export(exported.export, threads=1)
    video_dim, query_dim = exported.raw_video_dim, exported.dims.t_feat_dim
    with pytest.raises(MasraError) as err:
        grounder.predict(np.zeros((5, 7), np.float32), np.zeros((2, query_dim), np.float32))
    assert err.value.field == "video_feats"
    with pytest.raises(MasraError, match="no tokens"):
        grounder.predict(np.zeros((5, video_dim), np.float32), np.zeros((0, query_dim), np.float32))


def test_a_folder_without_an_export_is_refused(tmp_path):
    with pytest.raises(MasraError, match="not a masra export"):
        OnnxGrounder.from_export(tmp_path)


def test_the_torch_free_interpreter_has_no_torch_installed():
    """The venv the torch-free scripts run in (MASRA_RUNTIME_PYTHON) has no torch at all, not only a refused one."""
    python = runtime_python()
    if python == sys.executable:
        pytest.skip("MASRA_RUNTIME_PYTHON is not set: the scripts run here, torch refused by an import blocker")
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"
    assert subprocess.run([python, "-c", probe], timeout=60).returncode == 0
