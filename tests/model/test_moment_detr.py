"""The Moment-DETR backbone (``model.backbone: moment_detr``): shapes, padding, gradients, its saliency loss and
the settings it refuses. Equality with Moment-DETR's own code: tests/convert/test_convert_moment_detr.py."""

from __future__ import annotations

import pytest
import torch

from masra.config import load_config
from masra.errors import MasraError
from masra.model import build_model
from masra.model.moment_detr import MomentDETR

from conftest import T_DIM, V_DIM, last_sample_alone
from test_masra_integration import assert_padding_leaves_valid_outputs


def moment_config(small_config, **overrides):
    return small_config(backbone="moment_detr", use_negative_pairs=False, activation="relu", **overrides)


def _model(cfg, seed=0):
    torch.manual_seed(seed)
    return build_model(cfg, V_DIM, T_DIM)


def test_output_shapes_in_training(small_config, random_batch):
    cfg = moment_config(small_config)
    model, _ = _model(cfg)
    assert isinstance(model, MomentDETR)
    batch = random_batch([7, 5, 3], [4, 2, 3])
    out = model.train()(batch)
    q, d = cfg.model.num_queries, cfg.model.hidden_dim
    assert out["pred_logits"].shape == out["pred_spans"].shape == (3, q, 2)
    assert ((out["pred_spans"] > 0) & (out["pred_spans"] < 1)).all()
    assert out["saliency_scores"].shape == (3, 7) and "saliency_scores_neg" not in out
    assert len(out["aux_outputs"]) == cfg.model.dec_layers - 1
    assert out["memory"].shape == (3, 7, d)


def test_padding_never_changes_valid_outputs(small_config, random_batch):
    model, _ = _model(moment_config(small_config))
    model.eval()
    pair = random_batch([9, 5], [5, 2], seed=1)
    alone = last_sample_alone(pair, clips=5, tokens=2)
    with torch.no_grad():
        padded_out, alone_out = model(pair), model(alone)
    assert torch.allclose(padded_out["pred_spans"][1], alone_out["pred_spans"][0], atol=1e-5)
    assert torch.allclose(padded_out["pred_logits"][1], alone_out["pred_logits"][0], atol=1e-5)
    assert torch.allclose(padded_out["saliency_scores"][1, :5], alone_out["saliency_scores"][0], atol=1e-5)


@pytest.mark.parametrize("align", [False, True])
def test_a_training_step_sends_gradient_to_every_parameter(small_config, random_batch, align):
    model, criterion = _model(moment_config(small_config, contrastive_align=align))
    batch = random_batch([8, 6, 5], [4, 3, 2])
    terms = criterion(model.train()(batch), batch)
    terms["loss"].backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []
    # The alignment loss on every decoder layer, weighted like the set losses (Moment-DETR's weight_dict).
    assert ("loss_contrastive_align_0" in terms) is align and ("contrastive_query.weight" in dict(model.named_parameters())) is align


def test_the_saliency_loss_is_the_margin_hinge_alone(small_config, random_batch):
    """Moment-DETR's loss_saliency: 2 · mean max(0, margin + s_neg − s_pos); no rank-contrastive term."""
    cfg = moment_config(small_config)
    model, criterion = _model(cfg)
    batch = random_batch([8, 6], [4, 3])
    out = model.eval()(batch)
    scores = out["saliency_scores"]
    pos = scores.gather(1, batch.saliency_pos_idx)
    neg = scores.gather(1, batch.saliency_neg_idx)
    expected = (cfg.loss.saliency_margin + neg - pos).clamp(min=0).mean() * 2
    assert torch.allclose(criterion(out, batch)["loss_saliency"], expected)
    qd_model, qd_criterion = _model(small_config(use_negative_pairs=False))
    qd_out = qd_model.eval()(batch)
    qd_scores = qd_out["saliency_scores"]
    hinge = (cfg.loss.saliency_margin + qd_scores.gather(1, batch.saliency_neg_idx)
             - qd_scores.gather(1, batch.saliency_pos_idx)).clamp(min=0).mean() * 2
    assert qd_criterion(qd_out, batch)["loss_saliency"] > hinge  # QD-DETR adds its rank-contrastive term


def test_qd_detr_stays_the_default_backbone(small_config):
    model, _ = _model(small_config())
    assert type(model).__name__ == "GroundingModel" and small_config().model.backbone == "qd_detr"


def test_the_packaged_config_sets_moment_detrs_model():
    cfg = load_config("moment_detr_qvhighlights")
    model = cfg.model
    assert (model.backbone, model.activation, model.use_negative_pairs) == ("moment_detr", "relu", False)
    assert cfg.data == load_config("qvhighlights").data  # the dataset settings are the QVHighlights config's


@pytest.mark.parametrize("overrides, field", [
    ({"backbone": "uvcom"}, "model.backbone"),
    ({"contrastive_align": True}, "model.contrastive_align"),
    ({"backbone": "moment_detr"}, "model.use_negative_pairs"),
    ({"backbone": "moment_detr", "use_negative_pairs": False, "encoder_window": 8}, "model.encoder_window"),
])
def test_settings_a_backbone_lacks_are_refused_by_name(tmp_path, overrides, field):
    (tmp_path / "c.yaml").write_text("model:\n" + "".join(f"  {k}: {str(v).lower()}\n" for k, v in overrides.items()))
    with pytest.raises(MasraError) as err:
        load_config(tmp_path / "c.yaml")
    assert err.value.field == field


# ----- MASRA parts on the Moment-DETR backbone (docs/method.md, "Parts on each backbone") -----------------------
def moment_with_parts(small_config, parts: str):
    from masra.config import set_masra_parts

    cfg = set_masra_parts(moment_config(small_config), parts)
    cfg.model.sora.band = 2
    cfg.loss.lrca_band = 2
    cfg.model.dai.codebook_size = 4
    torch.manual_seed(0)
    return build_model(cfg, V_DIM, T_DIM, 12)


def test_switching_parts_on_leaves_every_baseline_weight_at_its_initial_value(small_config):
    """DAI brings a T2V encoder Moment-DETR lacks; it and every part are built after the baseline, so the
    ablation's pairing holds: every Moment-DETR parameter starts equal."""
    baseline = dict(moment_with_parts(small_config, "none")[0].named_parameters())
    model, _ = moment_with_parts(small_config, "all")
    weights = dict(model.named_parameters())
    assert set(baseline) <= set(weights)
    assert all(torch.equal(baseline[name], weights[name]) for name in baseline)
    assert len(model.t2v_encoder.layers) == small_config().model.t2v_layers
    assert moment_with_parts(small_config, "sora,sge,esta,lrca")[0].t2v_encoder is None  # only DAI brings it


def test_padding_never_changes_valid_outputs_with_all_parts(small_config, random_batch):
    """SORA's context is the query tokens here: a padded token must stay out of every clip's attention."""
    assert_padding_leaves_valid_outputs(moment_with_parts(small_config, "all")[0], random_batch)


def test_each_part_changes_the_outputs_it_should(small_config, random_batch):
    """SORA refines and SGE enhances the clip memory the heads read; DAI's relevance and the parts' loss
    outputs are there; without priors at inference the model runs."""
    batch = random_batch([7, 5], [4, 2], seed=3)
    base_model, _ = moment_with_parts(small_config, "none")
    with torch.no_grad():
        base = base_model.eval()(batch)
    for parts, key in (("sora", None), ("sge", "sge_semantics"), ("dai", "dai_relevance"), ("lrca", "lrca_video_proj")):
        model, _ = moment_with_parts(small_config, parts)
        with torch.no_grad():
            out = model.eval()(batch)
        assert key is None or key in out
        if parts in ("sora", "dai"):  # these change the memory the heads read at initialisation
            assert not torch.allclose(out["saliency_scores"], base["saliency_scores"])
