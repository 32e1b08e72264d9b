"""`masra convert cg-detr` against a checkpoint, outputs, loss terms and submission rows made by CG-DETR's own code
(tests/fixtures/cg_detr, see its README): the converted model must reproduce CG-DETR's outputs and losses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from convert.fixture_predict import predict_fixture_rows
from masra.cli.main import main
from masra.convert.cg_detr import convert_cg_detr, load_cg_detr_checkpoint
from masra.data.batch import GroundingBatch
from masra.errors import MasraError
from masra.inference import load_model
from masra.model import build_criterion
from masra.model.dropout import Dropout

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "cg_detr"
CHECKPOINT = FIXTURE / "model_best.ckpt"
# The training batch's vids (make_fixture.py TRAIN_VIDS): the last two are windows of the first one's video.
TRAIN_VIDS = ["vidA_0.0_150.0", "vidB_30.0_180.0", "vidA_60.0_210.0", "vidA_90.0_240.0"]
# masra output -> CG-DETR's output of the training forward (make_fixture.py loss_terms).
TRAINING_OUTPUTS = {
    "pred_logits": "pred_logits", "pred_spans": "pred_spans", "saliency_scores": "saliency_scores",
    "saliency_scores_neg": "saliency_scores_neg", "t2v_text_attention": "t2vattnvalues",
    "t2v_text_attention_neg": "t2vattnvalues_neg", "moment_token": "memory_moment",
    "non_moment_token": "nmmemory_moment", "sentence_token": "sentence_txt", "sentence_dummy_token": "sentence_dummy",
    "moment_text_similarity": "moment2txt_similarity", "negative_rows": "real_neg_mask",
}


@pytest.fixture(scope="module")
def converted_run(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("convert") / "cg_detr"
    assert main(["convert", "cg-detr", str(CHECKPOINT), "--out", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def io() -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURE / "io.npz"))


def eval_batch(io) -> GroundingBatch:
    return GroundingBatch(video_feats=torch.from_numpy(io["src_vid"]), video_mask=torch.from_numpy(io["src_vid_mask"]),
                          query_feats=torch.from_numpy(io["src_txt"]), query_mask=torch.from_numpy(io["src_txt_mask"]),
                          meta=[{}, {}])


def training_batch(io) -> GroundingBatch:
    """The fixture's training batch with its targets (CG-DETR's layout -> masra's)."""
    t = {k.removeprefix("train/"): torch.from_numpy(v) for k, v in io.items() if k.startswith("train/")}
    spans = [t["target_spans"][i, :n] for i, n in enumerate(t["target_span_count"])]
    return GroundingBatch(video_feats=t["src_vid"], video_mask=t["src_vid_mask"], query_feats=t["src_txt"],
                          query_mask=t["src_txt_mask"], meta=[{"vid": vid} for vid in TRAIN_VIDS], span_targets=spans,
                          saliency_pos_idx=t["saliency_pos"], saliency_neg_idx=t["saliency_neg"],
                          saliency_all_labels=t["saliency_all"])


def without_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Every dropout probability set to 0, so that the training forward is deterministic (CG-DETR's was run with
    its training branch in eval mode)."""
    for module in model.modules():
        if isinstance(module, Dropout):
            module.p = 0.0
        for name in ("dropout", "attn_dropout"):  # the attention modules' probabilities
            if isinstance(getattr(module, name, None), float):
                setattr(module, name, 0.0)
    return model


def test_converted_model_reproduces_cg_detr_outputs_on_a_padded_batch(converted_run, io):
    model, cfg, _ = load_model(converted_run, "cpu")
    assert cfg.model.backbone == "cg_detr"
    assert io["src_vid_mask"].min() == 0 and io["src_txt_mask"].min() == 0  # the second sample is padded
    with torch.no_grad():
        out = model(eval_batch(io))  # both samples in one call
    layers = [("", out)] + [(f"aux{i}_", aux) for i, aux in enumerate(out["aux_outputs"])]
    assert len(layers) == cfg.model.dec_layers == 2
    for prefix, layer in layers:
        for key in ("pred_logits", "pred_spans"):
            np.testing.assert_allclose(layer[key].numpy(), io[prefix + key], atol=1e-6, rtol=0)
    np.testing.assert_allclose(out["saliency_scores"].numpy(), io["saliency_scores"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(out["t2v_text_attention"].numpy(), io["t2vattnvalues"], atol=1e-6, rtol=0)


def test_training_outputs_and_every_loss_term_are_cg_detrs(converted_run, io):
    """The training forward (negative pairs with two false negatives, moment / sentence tokens) and CG-DETR's
    SetCriterion on it: the same terms, the same weights, the same values."""
    model, cfg, _ = load_model(converted_run, "cpu")
    batch = training_batch(io)
    with torch.no_grad():
        out = without_dropout(model).train()(batch)
    assert out["negative_rows"].tolist() == [True, True, False, False]
    for key, anchor_key in TRAINING_OUTPUTS.items():
        expected = io[f"train_out/{anchor_key}"]
        # 1e-6 of the output's scale: the moment-word similarity sums products of unnormalised encoder outputs
        # (entries up to ~11), so its float32 rounding is relative to that scale, not to each (cancelled) entry.
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(out[key].float().numpy(), expected, atol=1e-6 * scale, rtol=0, err_msg=key)
    criterion = build_criterion(cfg.loss, cfg.model.dec_layers, cfg.model)
    with torch.no_grad():
        terms = criterion(out, batch)
    expected = {key.removeprefix("loss/"): float(io[key]) for key in io if key.startswith("loss/")}
    assert set(expected) - {"total"} == set(criterion.weight_dict)
    for name, value in expected.items():
        assert terms["loss" if name == "total" else name].item() == pytest.approx(value, rel=1e-6, abs=1e-6), name


def test_parameter_count_is_the_anchors_less_what_it_never_uses(converted_run):
    model, _, _ = load_model(converted_run, "cpu")
    anchor = load_cg_detr_checkpoint(CHECKPOINT)["model"]
    info = json.loads((converted_run / "last" / "checkpoint.json").read_text())
    dropped = info["converted_from"]["dropped"]
    assert sorted(dropped) == [
        "txt_position_embed.LayerNorm.bias", "txt_position_embed.LayerNorm.weight",
        "txt_position_embed.position_embeddings.weight", "txt_proj_linear.LayerNorm.bias",
        "txt_proj_linear.LayerNorm.weight", "txt_proj_linear.net.1.bias", "txt_proj_linear.net.1.weight"]
    unused = sum(anchor[k].numel() for k in dropped)
    assert sum(p.numel() for p in model.parameters()) == sum(t.numel() for t in anchor.values()) - unused


def test_predict_writes_cg_detrs_own_submission_rows(converted_run, io, tmp_path):
    """The fixture's features through `masra predict`: the rows of CG-DETR's inference code (windows clamped to
    the duration, then its post-processing), window for window."""
    expected = [json.loads(line) for line in (FIXTURE / "submission.jsonl").read_text().splitlines()]
    assert predict_fixture_rows(converted_run, io, expected, tmp_path) == expected


def test_config_comes_from_opt(converted_run):
    opt = vars(load_cg_detr_checkpoint(CHECKPOINT)["opt"])
    cfg = yaml.safe_load((converted_run / "last" / "config.yaml").read_text())
    model, own, loss = cfg["model"], cfg["model"]["cg_detr"], cfg["loss"]
    assert (model["backbone"], model["activation"], model["use_negative_pairs"]) == ("cg_detr", "prelu", True)
    assert (model["t2v_layers"], model["enc_layers"], model["hidden_dim"]) == (
        opt["t2v_layers"], opt["enc_layers"], opt["hidden_dim"])
    assert (own["num_dummies"], own["dummy_layers"], own["sentence_layers"], own["moment_layers"]) == (
        opt["num_dummies"], opt["dummy_layers"], opt["sent_layers"], opt["moment_layers"])
    assert (own["prompt_bank"], own["prompts"]) == (opt["total_prompts"], opt["num_prompts"])
    assert (loss["saliency_attention"], loss["moment_sentence"]) == (opt["lw_wattn"], opt["lw_ms_align"])
    assert loss["distill"] == loss["orthogonal_dummy"] == opt["lw_distill"]
    assert cfg["eval"]["clamp_to_duration"] is True
    assert json.loads((converted_run / "last" / "checkpoint.json").read_text())["converted_from"]["format"] == "cg-detr"


@pytest.mark.parametrize("dset_name, use_matcher, negative_pair", [
    ("hl", True, 1.0), ("tvsum", False, 1.0), ("youtube_uni", False, 0.0)])
def test_training_losses_follow_the_checkpoints_dataset(tmp_path, dset_name, use_matcher, negative_pair):
    """CG-DETR matches no spans on the highlight-only datasets and, on YouTube Highlights, multiplies both
    negative-pair terms by 0 (cg_detr/model.py): a converted run trains on as its checkpoint did."""
    checkpoint = load_cg_detr_checkpoint(CHECKPOINT)
    checkpoint["opt"].dset_name, checkpoint["opt"].dset_domain = dset_name, None if dset_name == "hl" else "BK"
    torch.save(checkpoint, tmp_path / "m.ckpt")
    loss = convert_cg_detr(tmp_path / "m.ckpt").cfg.loss
    assert (loss.use_matcher, loss.negative_pair) == (use_matcher, negative_pair)


@pytest.mark.parametrize("option, value, message", [
    ("contrastive_align_loss", True, "contrastive alignment"),
    ("use_txt_pos", True, "text position embeddings"),
    ("num_prompts", 5, "out of range"),
])
def test_unsupported_options_are_refused(tmp_path, option, value, message):
    checkpoint = load_cg_detr_checkpoint(CHECKPOINT)
    setattr(checkpoint["opt"], option, value)
    torch.save(checkpoint, tmp_path / "m.ckpt")
    with pytest.raises(MasraError, match=message) as err:
        convert_cg_detr(tmp_path / "m.ckpt")
    assert err.value.field == f"opt.{option}"


def test_foreign_tensors_and_files_are_refused(tmp_path):
    checkpoint = load_cg_detr_checkpoint(CHECKPOINT)
    checkpoint["model"]["extra.weight"] = torch.zeros(2)
    torch.save(checkpoint, tmp_path / "extra.ckpt")
    with pytest.raises(MasraError, match="CG-DETR tensor 'extra.weight' has no masra counterpart"):
        convert_cg_detr(tmp_path / "extra.ckpt")
    checkpoint = load_cg_detr_checkpoint(CHECKPOINT)
    checkpoint["model"]["dummy_rep_token"] = torch.zeros(7, 16)  # not the num_dummies opt says
    torch.save(checkpoint, tmp_path / "shape.ckpt")
    with pytest.raises(MasraError, match="shape differs"):
        convert_cg_detr(tmp_path / "shape.ckpt")
    torch.save({"model": {}, "opt": Path("x")}, tmp_path / "pickled.ckpt")
    with pytest.raises(MasraError, match="refused: loading it would call"):
        convert_cg_detr(tmp_path / "pickled.ckpt")
