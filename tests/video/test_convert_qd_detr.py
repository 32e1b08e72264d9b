"""`masra convert qd-detr` against a checkpoint and outputs made by QD-DETR's own code
(tests/fixtures/qd_detr, see its README): the converted model must reproduce QD-DETR's outputs."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
import yaml
from tiny_clip import make_tiny_clip
from video_assets import QD_DETR_FIXTURE

from masra.cli.main import main
from masra.convert.qd_detr import convert_qd_detr, load_qd_detr_checkpoint
from masra.data.batch import GroundingBatch
from masra.errors import MasraError
from masra.inference import load_model


def test_converted_model_reproduces_qd_detr_outputs(converted_qd_run):
    model, cfg, dims = load_model(converted_qd_run, "cpu")
    io = np.load(QD_DETR_FIXTURE / "io.npz")
    batch = GroundingBatch(video_feats=torch.from_numpy(io["src_vid"]), video_mask=torch.from_numpy(io["src_vid_mask"]),
                           query_feats=torch.from_numpy(io["src_txt"]), query_mask=torch.from_numpy(io["src_txt_mask"]),
                           meta=[{}, {}])
    with torch.no_grad():
        out = model(batch)
    valid = io["src_vid_mask"].astype(bool)
    np.testing.assert_allclose(out["pred_logits"].numpy(), io["pred_logits"], atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(out["pred_spans"].numpy(), io["pred_spans"], atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(out["saliency_scores"].numpy()[valid], io["saliency_scores"][valid], atol=1e-5, rtol=1e-4)
    for i, aux in enumerate(out["aux_outputs"]):
        np.testing.assert_allclose(aux["pred_logits"].numpy(), io[f"aux{i}_pred_logits"], atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(aux["pred_spans"].numpy(), io[f"aux{i}_pred_spans"], atol=1e-5, rtol=1e-4)


def test_config_and_dims_come_from_opt(converted_qd_run):
    with torch.serialization.safe_globals([argparse.Namespace]):
        opt = vars(torch.load(QD_DETR_FIXTURE / "model_best.ckpt", map_location="cpu", weights_only=True)["opt"])
    cfg = yaml.safe_load((converted_qd_run / "last" / "config.yaml").read_text())
    info = json.loads((converted_qd_run / "last" / "checkpoint.json").read_text())
    assert info["dims"]["v_feat_dim"] == opt["v_feat_dim"] and info["dims"]["t_feat_dim"] == opt["t_feat_dim"]
    assert info["dims"]["v_source_dims"] == [opt["v_feat_dim"] - 2]
    assert cfg["data"]["use_tef"] is ("tef" in opt["ctx_mode"]) and cfg["data"]["clip_length"] == opt["clip_length"]
    assert cfg["data"]["max_v_l"] == opt["max_v_l"] and cfg["model"]["hidden_dim"] == opt["hidden_dim"]
    assert "v_feat_dim" not in cfg["data"] and "t_feat_dim" not in cfg["data"]  # dims live in ModelDims only
    assert cfg["model"]["num_queries"] == opt["num_queries"] and cfg["model"]["dec_layers"] == opt["dec_layers"]
    assert cfg["eval"]["postprocess"] == "qvhighlights" and cfg["eval"]["nms_threshold"] == opt["nms_thd"]
    assert cfg["loss"]["label"] == opt["label_loss_coef"] and cfg["loss"]["use_matcher"] is True
    # opt names CLIP feature folders, but of width 14, not OpenAI CLIP ViT-B/32's 512: no encoder is implied.
    assert info["dims"]["feature_encoder"] is None
    assert info["converted_from"]["dropped"] == {
        k: "unused by QD-DETR's forward with use_txt_pos=False" for k in
        ("txt_position_embed.position_embeddings.weight", "txt_position_embed.LayerNorm.weight",
         "txt_position_embed.LayerNorm.bias")}


def test_unsupported_options_and_foreign_files_are_refused(tmp_path):
    checkpoint = load_qd_detr_checkpoint(QD_DETR_FIXTURE / "model_best.ckpt")
    checkpoint["opt"].pre_norm = True
    torch.save(checkpoint, tmp_path / "prenorm.ckpt")
    with pytest.raises(MasraError, match="pre-norm"):
        convert_qd_detr(tmp_path / "prenorm.ckpt")
    checkpoint["opt"].pre_norm = False
    checkpoint["model"]["extra.weight"] = torch.zeros(2)
    torch.save(checkpoint, tmp_path / "extra.ckpt")
    with pytest.raises(MasraError, match="'extra.weight' has no masra counterpart"):
        convert_qd_detr(tmp_path / "extra.ckpt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.ckpt")
    with pytest.raises(MasraError, match="not a QD-DETR checkpoint"):
        convert_qd_detr(tmp_path / "other.ckpt")


def test_an_existing_run_folder_is_not_overwritten(converted_qd_run):
    before = (converted_qd_run / "last" / "model.safetensors").read_bytes()
    assert main(["convert", "qd-detr", str(QD_DETR_FIXTURE / "model_best.ckpt"), "--out", str(converted_qd_run)]) == 1
    assert (converted_qd_run / "last" / "model.safetensors").read_bytes() == before


def test_force_replaces_only_a_converted_run(tmp_path):
    ckpt = str(QD_DETR_FIXTURE / "model_best.ckpt")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("not masra's")
    assert main(["convert", "qd-detr", ckpt, "--out", str(notes), "--force"]) == 1
    assert (notes / "keep.txt").read_text() == "not masra's"  # a folder masra did not write is never deleted

    run = tmp_path / "run"
    assert main(["convert", "qd-detr", ckpt, "--out", str(run)]) == 0
    (run / "last" / "stale.txt").write_text("left by someone")
    assert main(["convert", "qd-detr", ckpt, "--out", str(run), "--force"]) == 1  # last/ holds a foreign file
    (run / "last" / "stale.txt").unlink()
    first = (run / "last" / "checkpoint.json").stat().st_mtime_ns
    assert main(["convert", "qd-detr", ckpt, "--out", str(run), "--force"]) == 0
    assert (run / "last" / "checkpoint.json").stat().st_mtime_ns != first


def test_the_encoder_can_be_named_at_conversion(tmp_path):
    converted = convert_qd_detr(QD_DETR_FIXTURE / "model_best.ckpt", encoder="clip:/models/clip-b32")
    assert converted.encoder == "clip:/models/clip-b32"


def test_a_converted_run_predicts_on_video_files_and_evaluates(converted_qd_run, bikes, tmp_path, caplog):
    """The fixture takes 14-d clip and 10-d query features: a small CLIP of those widths stands in for the
    encoder (the run records none, so the named one is used unverified, with a warning)."""
    clip = make_tiny_clip(tmp_path / "clip", projection_dim=14, text_width=10)
    out = tmp_path / "video.jsonl"
    assert main(["predict", "--checkpoint", str(converted_qd_run), "--video", str(bikes), "--query", "a cyclist",
                 "--encoder", f"clip:{clip}", "--out", str(out), "--device", "cpu"]) == 0
    row = json.loads(out.read_text())
    assert len(row["pred_saliency_scores"]) == 5 and row["pred_relevant_windows"]
    assert "does not record the encoder" in caplog.text
    rng = np.random.default_rng(0)
    (tmp_path / "v").mkdir()
    (tmp_path / "t").mkdir()
    rows = []
    for qid in range(3):
        np.savez(tmp_path / "v" / f"v{qid}.npz", features=rng.normal(size=(10, 14)).astype(np.float32))
        np.savez(tmp_path / "t" / f"qid{qid}.npz", last_hidden_state=rng.normal(size=(4, 10)).astype(np.float32))
        rows.append({"qid": qid, "query": "q", "duration": 20.0, "vid": f"v{qid}", "relevant_windows": [[4.0, 8.0]],
                     "relevant_clip_ids": [2, 3], "saliency_scores": [[1, 2, 3], [2, 3, 4]]})
    (tmp_path / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = tmp_path / "metrics.json"
    assert main(["evaluate", "--checkpoint", str(converted_qd_run), "--split", "val", "--out", str(metrics),
                 "--set", f"data.eval_path={tmp_path / 'val.jsonl'}", "--set", f"data.v_feat_dirs=[{tmp_path / 'v'}]",
                 "--set", f"data.t_feat_dir={tmp_path / 't'}"]) == 0
    assert "MR-full-mAP" in json.loads(metrics.read_text())["brief"]
