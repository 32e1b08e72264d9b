"""`masra convert moment-detr` against a checkpoint, outputs and submission rows made by Moment-DETR's own code
(tests/fixtures/moment_detr, see its README): the converted model must reproduce Moment-DETR's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from convert.fixture_predict import predict_fixture_rows
from masra.cli.main import main
from masra.convert.moment_detr import convert_moment_detr, load_moment_detr_checkpoint
from masra.data.batch import GroundingBatch
from masra.errors import MasraError
from masra.inference import load_model

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "moment_detr"
CHECKPOINT = FIXTURE / "model_best.ckpt"
# (checkpoint, its inputs / outputs / loss terms): the released options, and the contrastive alignment loss on.
CASES = {"released": ("model_best.ckpt", "io.npz"), "align": ("model_align.ckpt", "io_align.npz")}


@pytest.fixture(scope="module")
def converted_runs(tmp_path_factory) -> dict[str, Path]:
    torch.set_num_threads(1)
    runs = {}
    for case, (checkpoint, _) in CASES.items():
        runs[case] = tmp_path_factory.mktemp("convert") / f"moment_detr_{case}"
        assert main(["convert", "moment-detr", str(FIXTURE / checkpoint), "--out", str(runs[case])]) == 0
    return runs


@pytest.fixture(scope="module")
def converted_run(converted_runs) -> Path:
    return converted_runs["released"]


def fixture_batch(io) -> GroundingBatch:
    """The fixture's padded batch with its training targets (Moment-DETR's layout -> masra's)."""
    spans = [torch.from_numpy(io["target_spans"][i, :n]) for i, n in enumerate(io["target_span_count"])]
    return GroundingBatch(video_feats=torch.from_numpy(io["src_vid"]), video_mask=torch.from_numpy(io["src_vid_mask"]),
                          query_feats=torch.from_numpy(io["src_txt"]), query_mask=torch.from_numpy(io["src_txt_mask"]),
                          meta=[{}, {}], span_targets=spans, saliency_pos_idx=torch.from_numpy(io["saliency_pos"]),
                          saliency_neg_idx=torch.from_numpy(io["saliency_neg"]))


@pytest.mark.parametrize("case", CASES)
def test_converted_model_reproduces_moment_detr_outputs_and_losses_on_a_padded_batch(converted_runs, case):
    from masra.model import build_criterion

    model, cfg, _ = load_model(converted_runs[case], "cpu")
    assert cfg.model.backbone == "moment_detr" and cfg.model.contrastive_align is (case == "align")
    io = np.load(FIXTURE / CASES[case][1])
    assert io["src_vid_mask"].min() == 0  # the second sample is padded, in the same batch as the first
    batch = fixture_batch(io)
    with torch.no_grad():
        out = model(batch)
    layers = [("", out)] + [(f"aux{i}_", aux) for i, aux in enumerate(out["aux_outputs"])]
    assert len(layers) == 2
    for prefix, layer in layers:
        for key in ("pred_logits", "pred_spans", "saliency_scores", "proj_queries", "proj_txt_mem"):
            if prefix + key in io.files:  # saliency of the padded clips too; projections with the alignment on
                np.testing.assert_allclose(layer[key].numpy(), io[prefix + key], atol=1e-6, rtol=0)
    criterion = build_criterion(cfg.loss, cfg.model.dec_layers, cfg.model)
    with torch.no_grad():
        terms = criterion(out, batch)
    expected = {key.removeprefix("loss/"): float(io[key]) for key in io.files if key.startswith("loss/")}
    assert set(expected) - {"total"} == set(criterion.weight_dict)  # the same terms, the same weights below
    # Losses to 1e-5 relative: the alignment logits are sums over tokens divided by τ = 0.07, which scales the
    # outputs' float32 rounding (≤ 1e-6) by about 70.
    for name, value in expected.items():
        assert terms["loss" if name == "total" else name].item() == pytest.approx(value, rel=1e-5, abs=1e-6), name


@pytest.mark.parametrize("case", CASES)
def test_parameter_count_is_the_anchors_less_what_it_never_uses(converted_runs, case):
    model, _, _ = load_model(converted_runs[case], "cpu")
    anchor = load_moment_detr_checkpoint(FIXTURE / CASES[case][0])["model"]
    info = json.loads((converted_runs[case] / "last" / "checkpoint.json").read_text())
    dropped = info["converted_from"]["dropped"]
    never_read = ["contrastive_align_projection_vid.bias", "contrastive_align_projection_vid.weight"]
    assert sorted(dropped) == (never_read if case == "align" else []) + [
        "txt_position_embed.LayerNorm.bias", "txt_position_embed.LayerNorm.weight",
        "txt_position_embed.position_embeddings.weight"]
    anchor_count = sum(t.numel() for t in anchor.values())
    unused = sum(anchor[k].numel() for k in dropped)
    assert sum(p.numel() for p in model.parameters()) == anchor_count - unused


def test_predict_writes_moment_detrs_own_submission_rows(converted_run, tmp_path):
    """The fixture's features through `masra predict`: the rows of Moment-DETR's inference code, window for
    window."""
    expected = [json.loads(line) for line in (FIXTURE / "submission.jsonl").read_text().splitlines()]
    assert predict_fixture_rows(converted_run, np.load(FIXTURE / "io.npz"), expected, tmp_path) == expected


def test_config_comes_from_opt(converted_run):
    opt = vars(load_moment_detr_checkpoint(CHECKPOINT)["opt"])
    cfg = yaml.safe_load((converted_run / "last" / "config.yaml").read_text())
    assert cfg["model"]["backbone"] == "moment_detr" and cfg["model"]["activation"] == "relu"
    assert cfg["model"]["use_negative_pairs"] is False
    assert cfg["model"]["hidden_dim"] == opt["hidden_dim"] and cfg["model"]["enc_layers"] == opt["enc_layers"]
    assert cfg["loss"]["saliency_margin"] == opt["saliency_margin"] and cfg["train"]["lr"] == opt["lr"]
    info = json.loads((converted_run / "last" / "checkpoint.json").read_text())
    assert info["converted_from"]["format"] == "moment-detr"
    assert info["dims"]["v_feat_dim"] == opt["v_feat_dim"] and info["dims"]["t_feat_dim"] == opt["t_feat_dim"]


@pytest.mark.parametrize("option, value, message", [
    ("pre_norm", True, "pre-norm"),
    ("use_txt_pos", True, "text position embeddings"),
])
def test_unsupported_options_are_refused(tmp_path, option, value, message):
    checkpoint = load_moment_detr_checkpoint(CHECKPOINT)
    setattr(checkpoint["opt"], option, value)
    torch.save(checkpoint, tmp_path / "m.ckpt")
    with pytest.raises(MasraError, match=message) as err:
        convert_moment_detr(tmp_path / "m.ckpt")
    assert err.value.field == f"opt.{option}"


def test_foreign_tensors_and_files_are_refused(tmp_path):
    checkpoint = load_moment_detr_checkpoint(CHECKPOINT)
    checkpoint["model"]["extra.weight"] = torch.zeros(2)
    torch.save(checkpoint, tmp_path / "extra.ckpt")
    with pytest.raises(MasraError, match="Moment-DETR tensor 'extra.weight' has no masra counterpart"):
        convert_moment_detr(tmp_path / "extra.ckpt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.ckpt")
    with pytest.raises(MasraError, match="not a Moment-DETR checkpoint"):
        convert_moment_detr(tmp_path / "other.ckpt")
    # A pickled object outside the allow-list is refused by weights_only loading, never executed, and named.
    torch.save({"model": {}, "opt": Path("x")}, tmp_path / "pickled.ckpt")
    path_class = type(Path("x"))
    with pytest.raises(MasraError, match=f"refused: loading it would call {path_class.__module__}.{path_class.__name__}"):
        convert_moment_detr(tmp_path / "pickled.ckpt")


def test_an_existing_run_folder_is_not_overwritten(converted_run):
    before = (converted_run / "last" / "model.safetensors").read_bytes()
    assert main(["convert", "moment-detr", str(CHECKPOINT), "--out", str(converted_run)]) == 1
    assert (converted_run / "last" / "model.safetensors").read_bytes() == before
