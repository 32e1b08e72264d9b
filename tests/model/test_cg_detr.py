"""The CG-DETR backbone (``model.backbone: cg_detr``): shapes, padding, gradients, its training-only passes and
losses, the settings it refuses, and the MASRA parts on it. Equality with CG-DETR's own code:
tests/convert/test_convert_cg_detr.py."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from masra.config import load_config, set_masra_parts
from masra.errors import MasraError
from masra.model import build_criterion, build_model
from masra.model.cg_detr import CGDETR, largest_first, source_video

from conftest import T_DIM, V_DIM, last_sample_alone
from test_masra_integration import assert_padding_leaves_valid_outputs


def cg_config(small_config, **overrides):
    cfg = small_config(backbone="cg_detr", **overrides)
    cfg.model.cg_detr.num_dummies = 3
    cfg.model.cg_detr.prompt_bank = 4
    return cfg


def _model(cfg, seed=0, semantic_dim=None):
    torch.manual_seed(seed)
    return build_model(cfg, V_DIM, T_DIM, semantic_dim)


def with_vids(batch, vids):
    return dataclasses.replace(batch, meta=[{**meta, "vid": vid} for meta, vid in zip(batch.meta, vids)])


def test_output_shapes_in_training(small_config, random_batch):
    cfg = cg_config(small_config)
    model, _ = _model(cfg)
    assert isinstance(model, CGDETR)
    batch = with_vids(random_batch([7, 5, 3], [4, 2, 3]), ["a_0.0_150.0", "b_0.0_150.0", "a_30.0_180.0"])
    out = model.train()(batch)
    q, d, nd = cfg.model.num_queries, cfg.model.hidden_dim, 3
    assert out["pred_logits"].shape == out["pred_spans"].shape == (3, q, 2)
    assert out["saliency_scores"].shape == (3, 7) and out["global_token"].shape == (3, d)
    assert out["t2v_attention"].shape == (3, 7, nd + 4) and out["dummy_tokens"].shape == (3, nd, d)
    # The attention over [dummies ; tokens] is a distribution; padded tokens get none of it.
    torch.testing.assert_close(out["t2v_attention"].sum(-1), torch.ones(3, 7))
    assert (out["t2v_attention"][1, :, nd + 2:] == 0).all()
    # The third sample's next one is the first: the same source video, so no negative pair for it.
    assert out["negative_rows"].tolist() == [True, True, False]
    assert out["saliency_scores_neg"].shape == out["t2v_text_attention_neg"].shape == (2, 7)
    assert out["moment_text_similarity"].shape == (3, 7, nd + 4)
    assert torch.equal(out["moment_mask"], batch.saliency_all_labels > 0)


def test_inference_needs_no_targets_and_runs_no_training_pass(small_config, random_batch):
    model, _ = _model(cg_config(small_config))
    batch = dataclasses.replace(random_batch([6, 4], [3, 2]), span_targets=None, saliency_pos_idx=None,
                                saliency_neg_idx=None, saliency_all_labels=None, relevant_mask=None)
    with torch.no_grad():
        out = model.eval()(batch)
    assert not {"negative_rows", "moment_token", "sentence_token"} & set(out)


def test_padding_never_changes_valid_outputs(small_config, random_batch):
    model, _ = _model(cg_config(small_config))
    model.eval()
    pair = random_batch([9, 5], [5, 2], seed=1)
    alone = last_sample_alone(pair, clips=5, tokens=2)
    with torch.no_grad():
        padded_out, alone_out = model(pair), model(alone)
    for key in ("pred_spans", "pred_logits"):
        torch.testing.assert_close(padded_out[key][1], alone_out[key][0], atol=1e-5, rtol=1e-4)
    for key in ("saliency_scores", "t2v_text_attention"):
        torch.testing.assert_close(padded_out[key][1, :5], alone_out[key][0], atol=1e-5, rtol=1e-4)


def test_a_training_step_sends_gradient_to_every_parameter(small_config, random_batch):
    model, criterion = _model(cg_config(small_config))
    batch = with_vids(random_batch([8, 6, 5], [4, 3, 2]), ["a", "b", "c"])
    terms = criterion(model.train()(batch), batch)
    terms["loss"].backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []
    assert {"loss_ms_align", "loss_distill", "loss_orthogonal_dummy", "loss_saliency"} <= set(terms)
    assert all(torch.isfinite(terms[k]) for k in criterion.weight_dict)


def test_saliency_only_datasets_get_the_saliency_loss_alone(small_config, random_batch):
    """loss.use_matcher false (TVSum, YouTube Highlights): as in CG-DETR's SetCriterion.forward, the saliency loss
    alone, with none of the set losses, moment_sentence, distill or orthogonal_dummy, though the model's training
    outputs for them are there; the saliency loss is the one CG-DETR computes with matching on."""
    cfg = cg_config(small_config)
    cfg.loss.use_matcher, cfg.loss.saliency = False, 4.0
    model, criterion = _model(cfg)
    assert criterion.losses == ["spans", "labels", "saliency_cg_detr"]
    assert "loss_ms_align" not in criterion.weight_dict
    batch = with_vids(random_batch([8, 6, 5], [4, 3, 2]), ["a", "b", "c"])
    out = model.train()(batch)
    assert {"moment_token", "moment_text_similarity", "dummy_tokens", "saliency_scores_neg"} <= set(out)
    terms = criterion(out, batch)
    assert {key for key in terms if key.startswith("loss")} == {"loss_saliency", "loss"}
    assert torch.equal(terms["loss"], 4.0 * terms["loss_saliency"])
    matched = build_criterion(dataclasses.replace(cfg.loss, use_matcher=True), cfg.model.dec_layers, cfg.model)
    assert torch.equal(matched(out, batch)["loss_saliency"], terms["loss_saliency"])


def test_negative_pair_weighs_both_of_cg_detrs_negative_pair_terms(small_config, random_batch):
    """loss.negative_pair 0 (CG-DETR on YouTube Highlights) takes out exactly the mean over the real negative rows
    of Σ_valid −log(1 − σ(s_neg)) on the scores and saliency_attention × Σ_valid −log(1 − a_neg) on the attention;
    1 (the default) keeps both."""
    cfg = cg_config(small_config)
    cfg.loss.saliency_attention = 2.0
    model, _ = _model(cfg)
    batch = with_vids(random_batch([8, 6, 5], [4, 3, 2]), ["a_0.0_150.0", "b_0.0_150.0", "a_30.0_180.0"])
    with torch.no_grad():
        out = model.train()(batch)

        def saliency(**weights):
            loss_cfg = dataclasses.replace(cfg.loss, **weights)
            return build_criterion(loss_cfg, cfg.model.dec_layers, cfg.model)(out, batch)["loss_saliency"]

        full, without, default = saliency(negative_pair=1.0), saliency(negative_pair=0.0), saliency()
    rows = out["negative_rows"]
    assert rows.tolist() == [True, True, False]
    real = batch.video_mask[rows].double()
    scores_term = (F.softplus(out["saliency_scores_neg"].double()) * real).sum(1).mean()
    attention_term = (-torch.log1p(-out["t2v_text_attention_neg"].double()) * real).sum(1).mean()
    torch.testing.assert_close((full - without).double(), scores_term + 2.0 * attention_term, rtol=1e-5, atol=1e-5)
    assert torch.equal(full, default) and torch.isfinite(without)


@pytest.mark.parametrize("name", ["cg_detr_qvhighlights", "cg_detr_charades_sta", "cg_detr_tacos", "cg_detr_tvsum",
                                  "cg_detr_youtube_highlights"])
def test_each_packaged_cg_detr_config_trains_a_step(random_batch, name):
    """Each dataset's CG-DETR settings (dummies, prototypes, no matching, no negative-pair term) build and train,
    at a small width; CG-DETR's own losses run where matching is on."""
    cfg = load_config(name, ["model.hidden_dim=32", "model.nheads=4", "model.dim_feedforward=64"])
    model, criterion = _model(cfg)
    batch = with_vids(random_batch([8, 6, 5], [4, 3, 2]), ["a", "b", "c"])
    terms = criterion(model.train()(batch), batch)
    terms["loss"].backward()
    own = {"loss_ms_align", "loss_distill", "loss_orthogonal_dummy"}
    assert own <= set(terms) if cfg.loss.use_matcher else not own & set(terms)
    assert all(torch.isfinite(value) for key, value in terms.items() if key.startswith("loss"))
    assert model.dummy_tokens.shape[0] == cfg.model.cg_detr.num_dummies and model.dummy_tokens.grad is not None


def test_the_attention_saliency_loss_is_weighted_by_saliency_attention(small_config, random_batch):
    cfg = cg_config(small_config)
    model, criterion = _model(cfg)
    batch = random_batch([8, 6], [4, 3])
    with torch.no_grad():
        out = model.eval()(batch)
        base = criterion(out, batch)["loss_saliency"]
        cfg.loss.saliency_attention = 3.0
        tripled = criterion(out, batch)["loss_saliency"]
        cfg.loss.saliency_attention = 0.0
        scores_only = criterion(out, batch)["loss_saliency"]
    assert torch.allclose(tripled - scores_only, 3 * (base - scores_only)) and base > scores_only


@pytest.mark.parametrize("vid, source", [
    ("RoripwjYFp8_60.0_210.0", "RoripwjYFp8"),
    ("a_b_c_0.0_150.0", "a_b_c"),  # YouTube ids may hold underscores
    ("3MSZA", "3MSZA"),
    ("s13-d21_x_y", "s13-d21_x_y"),  # not <video>_<start>_<end>: its own source
])
def test_source_video_strips_a_qvhighlights_window(vid, source):
    assert source_video(vid) == source


def test_the_prototypes_are_torchs_topk_with_ties_to_the_lowest_index():
    torch.manual_seed(0)
    values = torch.rand(3, 10)
    for k in (1, 3, 10):
        top = values.topk(k, dim=1)
        assert all(torch.equal(a, b) for a, b in zip(largest_first(values, k), (top.values, top.indices)))
    tied = torch.tensor([[0.1, 0.3, 0.3, 0.3], [0.25, 0.25, 0.25, 0.25]])
    assert largest_first(tied, 2)[1].tolist() == [[1, 2], [0, 1]]


def test_a_one_clip_video_mixes_the_first_prototype(small_config):
    """One clip is its own mean: every prototype gets one weight, and the first is chosen (as in an export;
    torch's topk picks any)."""
    cfg = cg_config(small_config)
    model, _ = _model(cfg)
    video, mask, attention = torch.randn(1, 1, cfg.model.hidden_dim), torch.ones(1, 1), torch.ones(1, 1)
    with torch.no_grad():
        token = model.eval().saliency_token(video, mask, attention)
        model.prompt_tokens[1:] += torch.randn_like(model.prompt_tokens[1:])
        assert torch.equal(model.saliency_token(video, mask, attention), token)
        model.prompt_tokens[0] += torch.randn_like(model.prompt_tokens[0])
        assert not torch.allclose(model.saliency_token(video, mask, attention), token)


def test_the_packaged_config_sets_cg_detrs_model():
    cfg = load_config("cg_detr_qvhighlights")
    assert (cfg.model.backbone, cfg.model.enc_layers, cfg.model.dec_layers) == ("cg_detr", 3, 3)
    assert cfg.model.cg_detr.num_dummies == 45 and cfg.eval.clamp_to_duration
    assert cfg.data == load_config("qvhighlights").data


@pytest.mark.parametrize("overrides, field", [
    ({"backbone": "cg_detr", "contrastive_align": True}, "model.contrastive_align"),
    ({"backbone": "cg_detr", "encoder_window": 8}, "model.encoder_window"),
    ({"backbone": "cg_detr", "hidden_dim": 36, "nheads": 4}, "model.hidden_dim"),
    ({"backbone": "cg_detr", "cg_detr": {"prompts": 11}}, "model.cg_detr.prompts"),
    ({"backbone": "cg_detr", "cg_detr": {"num_dummies": 0}}, "model.cg_detr.num_dummies"),
    ({"backbone": "cg_detr", "dai": {"enabled": True, "codebook_values": True}}, "model.dai.codebook_values"),
])
def test_settings_cg_detr_lacks_are_refused_by_name(tmp_path, overrides, field):
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"model": overrides}))
    with pytest.raises(MasraError) as err:
        load_config(tmp_path / "c.yaml")
    assert err.value.field == field


# ----- MASRA parts on the CG-DETR backbone (docs/method.md, "Parts on each backbone") ---------------------------
def cg_with_parts(small_config, parts: str):
    cfg = set_masra_parts(cg_config(small_config), parts)
    cfg.model.sora.band = 2
    cfg.loss.lrca_band = 2
    cfg.model.dai.codebook_size = 4
    return _model(cfg, semantic_dim=12)


def test_switching_parts_on_leaves_every_baseline_weight_at_its_initial_value(small_config):
    baseline = dict(cg_with_parts(small_config, "none")[0].named_parameters())
    model, _ = cg_with_parts(small_config, "all")
    weights = dict(model.named_parameters())
    assert set(baseline) <= set(weights)
    assert all(torch.equal(baseline[name], weights[name]) for name in baseline)
    # DAI brings its codebook only: CG-DETR's own T2V attention stays (no decoupled attention is built).
    t2v = lambda names: {name for name in names if name.startswith("t2v_encoder.")}  # noqa: E731
    assert t2v(weights) == t2v(baseline) and not any("codebook_bias" in name for name in weights)


def test_dais_codebook_joins_the_dummies_as_absorbing_keys(small_config, random_batch):
    """With DAI, each clip's softmax spans [dummies ; C_v ; tokens]: DAI's relevance is the mass on the tokens,
    CG-DETR's attention output keeps [dummies ; tokens] (the codebook's mass taken out), and the codebook changes
    what the clips read."""
    batch = random_batch([7, 5], [4, 2], seed=3)
    model, _ = cg_with_parts(small_config, "dai")
    with torch.no_grad():
        out = model.eval()(batch)
    nd = 3
    text_mass = out["t2v_attention"][..., nd:].sum(-1)  # [B, L]
    torch.testing.assert_close(out["dai_relevance"], text_mass)
    assert (out["t2v_attention"].sum(-1) < 1).all()  # the codebook took its share
    base, _ = cg_with_parts(small_config, "none")
    with torch.no_grad():
        assert not torch.allclose(base.eval()(batch)["saliency_scores"], out["saliency_scores"])


def test_dais_relevance_joins_cg_detrs_saliency_on_both_passes(small_config, random_batch):
    """s_i = CG-DETR's score + w · logit(a_i), a_i the last T2V layer's mass on the tokens, on the positive pass
    and on the negative pass (its rows only)."""
    batch = with_vids(random_batch([7, 5], [4, 2], seed=3), ["a", "b"])
    model, _ = cg_with_parts(lambda **kw: small_config(dropout=0.0, input_dropout=0.0, **kw), "dai")
    weight = model.dai_codebook.relevance_weight
    with torch.no_grad():
        fused, fused_train = model.eval()(batch), model.train()(batch)
        weight.fill_(0.0)
        backbone_only, backbone_only_train = model.eval()(batch), model.train()(batch)
    valid = batch.video_mask.bool()
    log_odds = torch.logit(fused["dai_relevance_layers"][:, -1], eps=1e-6)
    torch.testing.assert_close(fused["saliency_scores"][valid], (backbone_only["saliency_scores"] + log_odds)[valid])
    assert fused_train["negative_rows"].all()
    shift = (fused_train["saliency_scores_neg"] - backbone_only_train["saliency_scores_neg"])[valid]
    assert shift.abs().min() > 0.1  # the negative pass's relevance joins its saliency too


def test_padding_never_changes_valid_outputs_with_all_parts(small_config, random_batch):
    assert_padding_leaves_valid_outputs(cg_with_parts(small_config, "all")[0], random_batch)


def test_all_parts_train_a_step_with_cg_detrs_losses(small_config, random_batch):
    from test_masra_integration import with_priors

    model, criterion = cg_with_parts(small_config, "all")
    batch = with_priors(with_vids(random_batch([8, 6], [4, 3]), ["a", "b"]), [1.0, 1.0])
    terms = criterion(model.train()(batch), batch)
    terms["loss"].backward()
    for term in ("loss_dai_relevance", "loss_sge_caption", "loss_esta", "loss_lrca", "loss_ms_align", "loss_distill"):
        assert torch.isfinite(terms[term]), term
    assert model.dai_codebook.codebook.grad is not None
